"""Kaggle's servers, faked at the network boundary: ``requests``' transport adapter.

``python tests/fake_kaggle_http.py LOG -m stages.submit ...`` runs the module with every HTTP request
answered here instead of sent, and each one recorded in LOG (JSON lines: method, url, body). The
real Kaggle client runs unchanged above it: its request building, authentication and upload logic.
``FAKE_KAGGLE_UPLOAD_STATUS`` sets the status the file upload gets (200: accepted).
"""

from __future__ import annotations

import json
import os
import runpy
import sys

import requests
from requests.adapters import HTTPAdapter

UPLOAD_URL = "https://upload.fake-kaggle.test/submission"
ACCEPTED = "Successfully submitted to the fake competition"


def _answer(request: requests.PreparedRequest, status: int, body: dict | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.url = request.url
    response.request = request
    response.headers["Content-Type"] = "application/json"
    response._content = json.dumps(body or {}).encode()
    return response


def install(log_path: str) -> None:
    def send(self, request, **kwargs):
        body = request.body.read() if hasattr(request.body, "read") else request.body
        body = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps({"method": request.method, "url": request.url, "body": body}) + "\n")
        if request.url.endswith("/StartSubmissionUpload"):
            return _answer(request, 200, {"token": "blob-token-1", "createUrl": UPLOAD_URL})
        if request.url == UPLOAD_URL:
            return _answer(request, int(os.environ.get("FAKE_KAGGLE_UPLOAD_STATUS", "200")))
        if request.url.endswith("/CreateSubmission"):
            return _answer(request, 200, {"message": ACCEPTED, "ref": 1})
        return _answer(request, 404, {"code": 404, "message": f"not faked: {request.url}"})

    HTTPAdapter.send = send


if __name__ == "__main__":
    install(sys.argv[1])
    module = sys.argv[3]
    sys.argv = [module, *sys.argv[4:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
