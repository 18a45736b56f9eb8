"""Runs one KServe predictor container as the kubelet would, for test_kserve_runtime.py.

Started inside a private mount and network namespace (so /mnt/models and the runtime's fixed
ports are this run's alone), with the container spec as JSON in argv[1]: runs its command and
args with exactly its environment, probes its readiness and liveness paths, then sends a v2
REST and a v2 gRPC inference to its ports. Prints one JSON object of what it saw.
"""

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import tritonclient.grpc as grpcclient


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return "refused"


def main():
    spec = json.loads(sys.argv[1])
    seen = {"readiness": [], "liveness": []}
    with open(spec["log"], "w") as log:
        proc = subprocess.Popen(spec["command"], env=spec["env"], stdout=log, stderr=subprocess.STDOUT)
    ready, live = spec["readiness"], spec["liveness"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        status = get(ready["port"], ready["path"])
        if not seen["readiness"] or seen["readiness"][-1] != status:
            seen["readiness"].append(status)
        seen["liveness"].append(get(live["port"], live["path"]))
        if status == 200:
            break
        time.sleep(0.05)
    seen["exited"] = proc.poll()
    if seen["exited"] is None and seen["readiness"][-1] == 200:
        check = spec["check"]
        body = json.dumps({"inputs": [check["input"]]}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{spec['http_port']}/v2/models/{spec['model_name']}/infer",
            data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as r:
            seen["rest"] = json.loads(r.read())
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{spec['grpc_port']}")
        seen["grpc_ready"] = [client.is_server_live(), client.is_server_ready(),
                              client.is_model_ready(spec["model_name"])]
        x = np.array(check["input"]["data"], dtype=np.float32).reshape(check["input"]["shape"])
        tensor = grpcclient.InferInput(check["input"]["name"], list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer(spec["model_name"], [tensor])
        response = result.get_response()
        seen["grpc"] = {
            "model_name": response.model_name,
            "outputs": {o.name: result.as_numpy(o.name).tolist() for o in response.outputs},
        }
        seen["liveness"].append(get(live["port"], live["path"]))
        metrics = spec["metrics"]
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics['port']}{metrics['path']}", timeout=5) as r:
            seen["metrics"] = r.read().decode()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            seen["exit_code"] = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            seen["exit_code"] = "killed"
    else:
        seen["exit_code"] = proc.returncode
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
