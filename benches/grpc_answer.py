"""Saves Pier's answer to a gRPC ModelInfer, serialized, for a zero-work limit to send back.

usage: python grpc_answer.py ADDR MODEL VERSION REQUEST.json OUT.pb

REQUEST.json is a v2 REST request; its first input is sent as `pier loadtest --protocol
v2-grpc` sends it (the tensor in raw_input_contents, via tritonclient). VERSION may be "" for
none. Needs numpy and tritonclient[grpc] (the tests' .venv and the peers' client venv have
them).
"""

import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient

addr, model, version, request, out = sys.argv[1:6]
tensor = json.load(open(request))["inputs"][0]
x = grpcclient.InferInput(tensor["name"], tensor["shape"], tensor["datatype"])
x.set_data_from_numpy(np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"]))
result = grpcclient.InferenceServerClient(addr).infer(model, [x], model_version=version)
open(out, "wb").write(result.get_response().SerializeToString())
