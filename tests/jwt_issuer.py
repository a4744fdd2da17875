#!/usr/bin/env python3
"""A local OIDC-style token issuer for the authorizer's bearer-token tests.

Tokens are minted with PyJWT (pinned in tools/stack/requirements-webhooks.txt), an
implementation Argus did not write; attack tokens are put together by hand, as an attacker would.

    python tests/jwt_issuer.py

Prints exactly one line, `LISTENING <port>`, once it accepts connections on 127.0.0.1.

  GET  /.well-known/jwks.json   the published keys (RSA "rsa-1" and P-256 "ec-1" at start)
  POST /mint    {"claims": {...}, "key": "rsa-1" | "ec-1" | "stray" | <rotated kid>,
                 "kid": optional header kid (default: the key's own)}  -> {"token"}
                "stray" is an RSA key that is never published.
  POST /rotate  publishes a new RSA key -> {"kid"}; the old ones stay published.
  POST /forge   {"kind": "none" | "hs256_public_key" | "tampered", "claims": {...},
                 "tamper": {...claims replaced after signing}}  -> {"token"}
  GET  /_control/jwks_fetches   -> {"count"}: how often the JWKS was read
"""

import base64
import hashlib
import hmac
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

LOCK = threading.Lock()
KEYS = {}  # kid -> (private key, algorithm, published)
FETCHES = [0]


def new_rsa():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwks():
    keys = []
    for kid, (private, alg, published) in KEYS.items():
        if not published:
            continue
        algorithm = RSAAlgorithm if alg == "RS256" else ECAlgorithm
        jwk = json.loads(algorithm.to_jwk(private.public_key()))
        jwk.update({"kid": kid, "use": "sig", "alg": alg})
        keys.append(jwk)
    return {"keys": keys}


def mint(claims, key, kid=None):
    private, alg, _ = KEYS[key]
    return jwt.encode(claims, private, algorithm=alg, headers={"kid": kid or key})


def forge(kind, claims, tamper):
    if kind == "none":
        header = {"alg": "none", "typ": "JWT", "kid": "rsa-1"}
        return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}."
    if kind == "hs256_public_key":
        # The classic confusion attack: HMAC "signed" with the issuer's public key, which an
        # attacker can read from the JWKS.
        public_pem = KEYS["rsa-1"][0].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        header = {"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64(signature)}"
    if kind == "tampered":
        header, _, signature = mint(claims, "rsa-1").split(".")
        changed = dict(claims, **tamper)
        return f"{header}.{b64(json.dumps(changed).encode())}.{signature}"
    raise ValueError(f"unknown forgery {kind}")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/.well-known/jwks.json":
            with LOCK:
                FETCHES[0] += 1
                body = jwks()
            return self.answer(200, body)
        if self.path == "/_control/jwks_fetches":
            return self.answer(200, {"count": FETCHES[0]})
        self.answer(404, {"error": "not found"})

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
            with LOCK:
                if self.path == "/mint":
                    return self.answer(200, {"token": mint(request["claims"], request.get("key", "rsa-1"), request.get("kid"))})
                if self.path == "/rotate":
                    kid = f"rsa-{len(KEYS)}"
                    KEYS[kid] = (new_rsa(), "RS256", True)
                    return self.answer(200, {"kid": kid})
                if self.path == "/forge":
                    token = forge(request["kind"], request["claims"], request.get("tamper", {}))
                    return self.answer(200, {"token": token})
        except (KeyError, ValueError) as err:
            return self.answer(400, {"error": str(err)})
        self.answer(404, {"error": "not found"})


def main():
    KEYS["rsa-1"] = (new_rsa(), "RS256", True)
    KEYS["ec-1"] = (ec.generate_private_key(ec.SECP256R1()), "ES256", True)
    KEYS["stray"] = (new_rsa(), "RS256", False)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"LISTENING {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
