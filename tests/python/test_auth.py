"""Authentication with unchanged clients: boto3 (sagemaker and sagemaker-runtime), the AWS
CLI and tritonclient (bearer token over HTTP and gRPC) against `pier serve --demo
--credentials FILE`, and each refusal's AWS error code."""

import json
import os
import subprocess

import boto3
import botocore.config
import botocore.exceptions
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from conftest import start_pier, stop_pier

CREDENTIALS = """\
[ops]
aws_access_key_id = AKIAOPS
aws_secret_access_key = ops/secret+key
pier_token = ops-token

[app]
aws_access_key_id = AKIAAPP
aws_secret_access_key = app-secret
pier_planes = invoke
pier_token = app-token
"""
IRIS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)


@pytest.fixture(scope="module")
def pier(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("auth")
    creds = tmp / "credentials"
    creds.write_text(CREDENTIALS)
    proc, addrs = start_pier(tmp / "data", "--demo", "--grpc", "127.0.0.1:0", "--credentials", str(creds))
    addrs["credentials"] = str(creds)
    yield addrs
    stop_pier(proc)


def client(kind, addr, key, secret):
    return boto3.client(
        kind,
        endpoint_url=f"http://{addr}",
        region_name="us-west-2",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )


def error_code(call):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call()
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403, e.value.response
    return e.value.response["Error"]["Code"]


def test_boto3_control_plane(pier):
    sm = client("sagemaker", pier["admin"], "AKIAOPS", "ops/secret+key")
    names = [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]]
    assert "demo" in names
    assert sm.describe_endpoint(EndpointName="demo")["EndpointStatus"] == "InService"
    wrong = client("sagemaker", pier["admin"], "AKIAOPS", "not-the-secret")
    assert error_code(wrong.list_endpoints) == "InvalidSignatureException"
    unknown = client("sagemaker", pier["admin"], "AKIAUNKNOWN", "x")
    assert error_code(unknown.list_endpoints) == "UnrecognizedClientException"
    invoke_only = client("sagemaker", pier["admin"], "AKIAAPP", "app-secret")
    assert error_code(invoke_only.list_endpoints) == "AccessDeniedException"
    unsigned = boto3.client(
        "sagemaker", endpoint_url=f"http://{pier['admin']}", region_name="us-west-2",
        config=botocore.config.Config(signature_version=botocore.UNSIGNED, retries={"max_attempts": 1}),
    )
    assert error_code(unsigned.list_endpoints) == "MissingAuthenticationToken"


def test_boto3_stale_date_and_tampered_body(pier, monkeypatch):
    import datetime

    import botocore.auth

    sm = client("sagemaker", pier["admin"], "AKIAOPS", "ops/secret+key")

    def tamper(request, **kwargs):
        # After signing: same length, other bytes.
        request.body = b"[]"

    sm.meta.events.register("before-send.sagemaker.ListEndpoints", tamper)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sm.list_endpoints()
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert "signature we calculated does not match" in e.value.response["Error"]["Message"]

    stale = client("sagemaker", pier["admin"], "AKIAOPS", "ops/secret+key")
    an_hour_ago = botocore.auth.get_current_datetime() - datetime.timedelta(hours=1)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: an_hour_ago)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        stale.list_endpoints()
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert e.value.response["Error"]["Message"].startswith("Signature expired:")


def test_boto3_runtime(pier):
    body = "5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n"
    for key, secret in [("AKIAOPS", "ops/secret+key"), ("AKIAAPP", "app-secret")]:
        rt = client("sagemaker-runtime", pier["http"], key, secret)
        r = rt.invoke_endpoint(EndpointName="demo", ContentType="text/csv", Accept="application/json", Body=body)
        assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert len(json.loads(r["Body"].read())["predictions"]) == 2
    wrong = client("sagemaker-runtime", pier["http"], "AKIAAPP", "wrong")
    code = error_code(lambda: wrong.invoke_endpoint(EndpointName="demo", ContentType="text/csv", Body=body))
    assert code == "InvalidSignatureException"


def test_presigned_url(pier):
    """botocore's own query signer (SigV4QueryAuth, what generate_presigned_url uses) on a
    v2 REST GET: valid, expired, and with a changed signature."""
    import time
    import urllib.error
    import urllib.request

    from botocore.auth import SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    def presign(expires):
        req = AWSRequest(method="GET", url=f"http://{pier['http']}/v2/models/demo")
        SigV4QueryAuth(Credentials("AKIAAPP", "app-secret"), "sagemaker", "us-west-2", expires=expires).add_auth(req)
        return req.url

    def get(url):
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    url = presign(60)
    assert "X-Amz-Signature=" in url
    status, answer = get(url)
    assert status == 200 and answer["name"] == "demo", answer
    short = presign(1)
    time.sleep(2.1)
    status, answer = get(short)
    assert status == 403 and "expired" in answer["error"], answer
    status, answer = get(url.replace("X-Amz-Signature=", "X-Amz-Signature=0"))
    assert status == 403 and "signature" in answer["error"], answer


def test_aws_cli(pier, tmp_path):
    env = dict(os.environ, AWS_SHARED_CREDENTIALS_FILE=pier["credentials"], AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_DEFAULT_REGION="us-west-2", AWS_MAX_ATTEMPTS="1")
    env.pop("AWS_ACCESS_KEY_ID", None)
    env.pop("AWS_SECRET_ACCESS_KEY", None)
    cmd = ["aws", "sagemaker", "list-endpoints", "--endpoint-url", f"http://{pier['admin']}"]
    ok = subprocess.run([*cmd, "--profile", "ops"], env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "demo" in ok.stdout
    denied = subprocess.run([*cmd, "--profile", "app"], env=env, capture_output=True, text=True, timeout=60)
    assert denied.returncode != 0 and "AccessDeniedException" in denied.stderr, denied.stderr


def test_tritonclient_tokens(pier):
    # Fresh header dicts per call: tritonclient's HTTP client adds its own to the dict.
    http = httpclient.InferenceServerClient(pier["http"])
    grpc = grpcclient.InferenceServerClient(pier["grpc"])
    assert http.is_server_live() and grpc.is_server_live()
    for mod, c in [(httpclient, http), (grpcclient, grpc)]:
        x = mod.InferInput("X", [2, 4], "FP32")
        x.set_data_from_numpy(IRIS)
        r = c.infer("demo", [x], headers={"authorization": "Bearer app-token"})
        assert r.as_numpy("label").shape == (2,)
        with pytest.raises(Exception) as e:
            c.infer("demo", [x], headers={"authorization": "Bearer guess"})
        assert "security token" in str(e.value), e.value
        with pytest.raises(Exception) as e:
            c.infer("demo", [x])
        assert "Authentication Token" in str(e.value), e.value


def make_pki(tmp):
    """A CA and a server certificate for localhost / 127.0.0.1, made with the openssl CLI."""
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp, timeout=60)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Pier test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (tmp / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return tmp / "ca.pem"


@pytest.fixture(scope="module")
def pier_tls(tmp_path_factory):
    import shutil

    if shutil.which("openssl") is None:
        pytest.fail("the openssl CLI is needed to make test certificates (.ci/run installs it)")
    tmp = tmp_path_factory.mktemp("tls")
    ca = make_pki(tmp)
    creds = tmp / "credentials"
    creds.write_text(CREDENTIALS)
    proc, addrs = start_pier(tmp / "data", "--demo", "--grpc", "127.0.0.1:0", "--credentials", str(creds),
                             "--tls-cert", str(tmp / "server.pem"), "--tls-key", str(tmp / "server.key"))
    addrs["ca"] = str(ca)
    yield addrs
    stop_pier(proc)


def test_boto3_over_tls(pier_tls):
    common = dict(region_name="us-west-2", verify=pier_tls["ca"], config=botocore.config.Config(retries={"max_attempts": 1}))
    sm = boto3.client("sagemaker", endpoint_url=f"https://{pier_tls['admin']}", aws_access_key_id="AKIAOPS",
                      aws_secret_access_key="ops/secret+key", **common)
    assert "demo" in [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]]
    rt = boto3.client("sagemaker-runtime", endpoint_url=f"https://{pier_tls['http']}", aws_access_key_id="AKIAAPP",
                      aws_secret_access_key="app-secret", **common)
    r = rt.invoke_endpoint(EndpointName="demo", ContentType="text/csv", Accept="application/json", Body="5.1,3.5,1.4,0.2\n")
    assert len(json.loads(r["Body"].read())["predictions"]) == 1
    denied = boto3.client("sagemaker", endpoint_url=f"https://{pier_tls['admin']}", aws_access_key_id="AKIAAPP",
                          aws_secret_access_key="app-secret", **common)
    assert error_code(denied.list_endpoints) == "AccessDeniedException"
    # A client that does not trust the CA refuses the server.
    untrusting = boto3.client("sagemaker", endpoint_url=f"https://{pier_tls['admin']}", aws_access_key_id="AKIAOPS",
                              aws_secret_access_key="ops/secret+key", region_name="us-west-2",
                              config=botocore.config.Config(retries={"max_attempts": 1}))
    with pytest.raises(botocore.exceptions.SSLError):
        untrusting.list_endpoints()


def test_tritonclient_over_tls(pier_tls):
    import gevent.ssl

    def context():
        return gevent.ssl.create_default_context(cafile=pier_tls["ca"])

    http = httpclient.InferenceServerClient(pier_tls["http"], ssl=True, ssl_context_factory=context)
    grpc = grpcclient.InferenceServerClient(pier_tls["grpc"], ssl=True, root_certificates=pier_tls["ca"])
    assert http.is_server_live() and grpc.is_server_live()
    for mod, c in [(httpclient, http), (grpcclient, grpc)]:
        x = mod.InferInput("X", [2, 4], "FP32")
        x.set_data_from_numpy(IRIS)
        r = c.infer("demo", [x], headers={"authorization": "Bearer app-token"})
        assert r.as_numpy("label").shape == (2,)
        with pytest.raises(Exception) as e:
            c.infer("demo", [x])
        assert "Authentication Token" in str(e.value), e.value


def test_sagemaker_sdk_and_pier_cli(pier):
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    import sagemaker  # in tests/python/requirements.txt: a missing SDK fails, never skips
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.serializers import CSVSerializer

    boto = boto3.Session(aws_access_key_id="AKIAAPP", aws_secret_access_key="app-secret", region_name="us-west-2")
    sess = sagemaker.session.Session(
        boto_session=boto,
        sagemaker_client=boto.client("sagemaker", endpoint_url=f"http://{pier['admin']}"),
        sagemaker_runtime_client=boto.client("sagemaker-runtime", endpoint_url=f"http://{pier['http']}"),
    )
    predictor = sagemaker.predictor.Predictor("demo", sagemaker_session=sess, serializer=CSVSerializer(),
                                              deserializer=JSONDeserializer())
    assert len(predictor.predict([[5.1, 3.5, 1.4, 0.2]])["predictions"]) == 1

    from conftest import pier_binary
    cmd = [pier_binary(), "endpoints", "list", "--admin-url", f"http://{pier['admin']}"]
    ok = subprocess.run([*cmd, "--token", "ops-token"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "demo" in ok.stdout, ok.stderr
    refused = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=dict(os.environ, PIER_TOKEN=""))
    assert refused.returncode != 0 and "MissingAuthenticationToken" in refused.stderr, refused.stderr
