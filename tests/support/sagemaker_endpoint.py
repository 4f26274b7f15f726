#!/usr/bin/env python3
"""A SageMaker endpoint for tests: moto's sagemaker-runtime in server mode, fronted by a proxy
that behaves like the built-in XGBoost container behind it.

For every InvokeEndpoint request the proxy
  * checks it is SigV4-signed for the sagemaker service,
  * answers 400 ValidationError for an endpoint name it does not serve (as SageMaker does),
  * answers 429 ThrottlingException to the first --throttle-first requests, then 503
    ServiceUnavailable to the next --unavailable-first ones,
  * scores the text/csv rows with the real xgboost library and the given model,
  * queues that answer in moto (its static endpoint-results API) and forwards the request, so the
    response is moto's,
  * appends {rows, bytes, columns, status} to --log (JSON Lines) for the test to inspect.

    python tests/support/sagemaker_endpoint.py --model model/default/model.json \
        --endpoint fraud-xgb --port-file /tmp/port --log /tmp/requests.jsonl [--throttle-first 2] [--unavailable-first 2]
"""

import argparse
import json
import socket
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import xgboost
from moto.moto_server.threaded_moto_server import ThreadedMotoServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_handler(args, booster, moto_url):
    lock = threading.Lock()
    state = {
        "throttle_left": args.throttle_first,
        "unavailable_left": args.unavailable_first,
        "queued": set(),
    }

    def log(entry):
        with lock, open(args.log, "a") as f:
            f.write(json.dumps(entry) + "\n")

    class Handler(BaseHTTPRequestHandler):
        def reply(self, status, body: bytes, headers):
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def error(self, status, code, message):
            log({"status": status, "error": code})
            body = json.dumps({"message": message}).encode()
            self.reply(status, body, {"x-amzn-ErrorType": code, "Content-Type": "application/json"})

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            parts = self.path.strip("/").split("/")
            auth = self.headers.get("Authorization", "")
            if not (auth.startswith("AWS4-HMAC-SHA256 ") and "/sagemaker/aws4_request" in auth):
                return self.error(
                    403, "MissingAuthenticationTokenException", "request is not SigV4-signed for sagemaker"
                )
            if len(parts) != 3 or parts[0] != "endpoints" or parts[2] != "invocations":
                return self.error(404, "UnknownOperationException", self.path)
            if parts[1] != args.endpoint:
                return self.error(
                    400, "ValidationError", f"Endpoint {parts[1]} of account 123456789012 not found."
                )
            with lock:
                throttle = state["throttle_left"] > 0
                state["throttle_left"] -= int(throttle)
                unavailable = not throttle and state["unavailable_left"] > 0
                state["unavailable_left"] -= int(unavailable)
            if throttle:
                return self.error(429, "ThrottlingException", "Rate exceeded")
            if unavailable:
                return self.error(503, "ServiceUnavailable", "the endpoint is unavailable (injected)")
            text = body.decode()
            rows = [
                [float(v) if v else np.nan for v in line.split(",")] for line in text.splitlines() if line
            ]
            scores = booster.predict(xgboost.DMatrix(np.array(rows, dtype=np.float32), missing=np.nan))
            answer = "".join(f"{p:.9g}\n" for p in scores)
            with lock:
                if body not in state["queued"]:
                    state["queued"].add(body)
                    results = {
                        "results": [
                            {
                                "Body": answer,
                                "ContentType": "text/csv",
                                "InvokedProductionVariant": "AllTraffic",
                            }
                        ]
                    }
                    request = urllib.request.Request(
                        f"{moto_url}/moto-api/static/sagemaker/endpoint-results",
                        data=json.dumps(results).encode(),
                        headers={"Content-Type": "application/json"},
                    )
                    urllib.request.urlopen(request).read()
                forward = urllib.request.Request(
                    f"{moto_url}{self.path}",
                    data=body,
                    method="POST",
                    headers={k: v for k, v in self.headers.items() if k.lower() != "host"},
                )
                try:
                    with urllib.request.urlopen(forward) as response:
                        status, payload, headers = response.status, response.read(), dict(response.headers)
                except urllib.error.HTTPError as e:
                    status, payload, headers = e.code, e.read(), dict(e.headers)
            log(
                {
                    "status": status,
                    "rows": len(rows),
                    "bytes": len(body),
                    "columns": len(rows[0]) if rows else 0,
                    "content_type": self.headers.get("Content-Type"),
                }
            )
            headers.pop("Content-Length", None)
            headers.pop("Transfer-Encoding", None)
            self.reply(status, payload, headers)

        def log_message(self, *_):
            pass

    return Handler


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, type=Path, help="XGBoost JSON model the endpoint serves")
    parser.add_argument("--endpoint", default="fraud-xgb", help="the one endpoint name served")
    parser.add_argument("--port-file", required=True, type=Path, help="written with the port once ready")
    parser.add_argument("--log", required=True, type=Path, help="JSON Lines log of the requests")
    parser.add_argument("--throttle-first", type=int, default=0, help="answer 429 to the first N requests")
    parser.add_argument(
        "--unavailable-first", type=int, default=0, help="then answer 503 to the next N requests"
    )
    args = parser.parse_args()

    booster = xgboost.Booster()
    booster.load_model(str(args.model))
    moto_port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), make_handler(args, booster, f"http://127.0.0.1:{moto_port}")
    )
    tmp = args.port_file.with_suffix(".tmp")
    tmp.write_text(str(server.server_address[1]))
    tmp.replace(args.port_file)
    try:
        server.serve_forever()
    finally:
        moto.stop()


if __name__ == "__main__":
    main()
