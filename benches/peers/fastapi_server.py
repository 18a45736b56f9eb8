#!/usr/bin/env python3
"""A hand-written Open Inference Protocol v2 REST server (FastAPI + uvicorn + onnxruntime)
for one ONNX model: the baseline a team would write themselves.

Routes: GET /v2 (server metadata), /v2/health/live, /v2/health/ready, /v2/models/{m}, /v2/models/{m}/ready,
/v2/models/{m}/config (Triton's shape, which perf_analyzer reads), POST /v2/models/{m}/infer
(JSON tensors only). One onnxruntime session per worker process, one intra-op thread.

Usage: PEER_MODEL=path/model.onnx PEER_MODEL_NAME=iris \
       uvicorn fastapi_server:app --host 127.0.0.1 --port N --workers 2
"""

import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import ORJSONResponse

NAME = os.environ.get("PEER_MODEL_NAME", "iris")
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
session = ort.InferenceSession(os.environ["PEER_MODEL"], options, providers=["CPUExecutionProvider"])

WIRE = {"tensor(float)": "FP32", "tensor(int64)": "INT64", "tensor(double)": "FP64"}
NUMPY = {"FP32": np.float32, "INT64": np.int64, "FP64": np.float64, "INT32": np.int32}


def spec(t):
    return {"name": t.name, "datatype": WIRE.get(t.type, "FP32"), "shape": [d if isinstance(d, int) else -1 for d in t.shape]}


app = FastAPI(default_response_class=ORJSONResponse)


def model_or_404(m: str):
    if m != NAME:
        raise HTTPException(status_code=404, detail=f"unknown model {m}")


@app.get("/v2")
async def server_metadata():
    return {"name": "fastapi-onnxruntime", "version": ort.__version__, "extensions": []}


@app.get("/v2/health/live")
@app.get("/v2/health/ready")
async def health():
    return {}


@app.get("/v2/models/{m}/ready")
async def ready(m: str):
    model_or_404(m)
    return {}


@app.get("/v2/models/{m}")
async def metadata(m: str):
    model_or_404(m)
    return {
        "name": NAME,
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [spec(t) for t in session.get_inputs()],
        "outputs": [spec(t) for t in session.get_outputs()],
    }


@app.get("/v2/models/{m}/config")
async def config(m: str):
    model_or_404(m)

    def dims(t):
        return [d if isinstance(d, int) else -1 for d in t.shape][1:] or [1]

    return {
        "name": NAME,
        "platform": "onnxruntime_onnx",
        "max_batch_size": 64,
        "input": [{"name": t.name, "data_type": "TYPE_" + WIRE.get(t.type, "FP32"), "dims": dims(t)} for t in session.get_inputs()],
        "output": [{"name": t.name, "data_type": "TYPE_" + WIRE.get(t.type, "FP32"), "dims": dims(t)} for t in session.get_outputs()],
    }


@app.post("/v2/models/{m}/infer")
async def infer(m: str, request: Request):
    model_or_404(m)
    body = await request.json()
    feeds = {}
    for t in body.get("inputs", []):
        dtype = NUMPY.get(t.get("datatype"))
        if dtype is None:
            raise HTTPException(status_code=400, detail=f"unsupported datatype {t.get('datatype')}")
        feeds[t["name"]] = np.asarray(t["data"], dtype=dtype).reshape(t["shape"])
    names = [o.name for o in session.get_outputs()]
    results = session.run(names, feeds)
    return {
        "model_name": NAME,
        "model_version": "1",
        "id": body.get("id", ""),
        "outputs": [
            {"name": n, "datatype": WIRE.get(o.type, "FP32"), "shape": list(r.shape), "data": r.ravel().tolist()}
            for n, o, r in zip(names, session.get_outputs(), results)
        ],
    }
