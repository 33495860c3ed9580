"""A local mock of the three Microsoft services scep-fcgi's Intune validation talks to, speaking
their wire format (../shared/docs/intune-api.md §6), over HTTPS on loopback:

  POST /{tenant}/oauth2/v2.0/token                                  Entra ID, client credentials
  GET  /v1.0/servicePrincipals/appId={intune app}/endpoints          Microsoft Graph discovery
  POST /RACerts/ScepRequestValidationFEService/.../ScepActions/{op}  Intune validateRequest,
                                                                     successNotification, failureNotification

validateRequest decides from the CSR's challengePassword:
  ok-*            Success                     code-<Code>-*   that code (any string)
  slow-<ms>-*     Success after <ms>          hang-*          no answer for 60 s (timeout)
  http500-*       HTTP 500 InternalError      nonjson-*       HTTP 200 with an HTML body
  notifyfail-*    Success, but successNotification answers HTTP 500
  notifyslow-<ms>-*  Success, and successNotification answers after <ms>
  sidprofile-<SID>   the profile carries {{OnPremisesSecurityIdentifier}} = <SID>: Success when the
                  CSR's URI subjectAltNames are exactly tag:microsoft.com,2022-09-14:sid:<SID>,
                  else SubjectAltNameMismatch (Intune checks the SANs against the profile)
  anything else   ChallengeDecryptionError
The PKI connector (PkiConnectorFEService, api-version 5019-05-05) serves Intune's revocation queue:
  POST .../CertificateAuthorityRequests/downloadRevocationRequests  the first maxRequests queued
       requests, and only then the issuerName filter (a loose, case-insensitive substring match on
       caConfiguration), as the service does (Intune-Resource-Access #133)
  POST .../CertificateAuthorityRequests/uploadRevocationResults     answers requests: each answered
       one leaves the queue, except with a retryable errorCode (4100-4102); an empty list is a 400
POST /_mock/revocations {"requests": [{requestContext, serialNumber, issuerName, caConfiguration}]}
queues requests; knobs revocation_status = <int> (both calls answer it), revocation_delay_ms = <ms>.
The token endpoint takes a client secret or, for the certificate credential, a client assertion
(RFC 7523): a JWT signed RS256 or PS256 by the key of a certificate registered with the knob
client_certificates = [PEM, ...], found by its x5t#S256 header; aud must be this token URL, iss =
sub = the client ID, jti fresh, nbf/exp now and at most 10 minutes apart. Refusals use Entra's codes
(AADSTS700027 signature or unknown key, AADSTS700024 time, AADSTS50027 malformed or wrong claims).
Knobs (POST /_mock/config, JSON): discovery = ok|missing|403|500, scep_status = <int> (every
ScepActions call answers it), unauthorized_once = true (next ScepActions call gets 401),
intune_roles = [...] (the `roles` claim of new Intune tokens; [] omits it, as without consent),
token_delay_ms = <ms> (a slow Entra: the token endpoint answers that much later), token_expires_in = <s>.
GET /_mock/state returns the recorded requests and counters; POST /_mock/reset clears them.

usage: intune_mock.py PORT CERT KEY TENANT CLIENT_ID SECRET_FILE
"""
import http.server
import json
import ssl
import sys
import threading
import time
import urllib.parse
import base64
import hashlib

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

INTUNE_APP = "0000000a-0000-0000-c000-000000000000"
SERVICE_PATH = "/RACerts/ScepRequestValidationFEService/Gateway/StatelessScepRequestValidationService"
PKI_PATH = "/RACerts/StatelessPkiConnectorService/Gateway/StatelessPkiConnectorService"
RETRYABLE = {"4100", "4101", "4102"}
INTUNE_AUDIENCE = "https://api.manage.microsoft.com/"
INTUNE_SCOPES = {"https://api.manage.microsoft.com//.default", "https://api.manage.microsoft.com/.default"}
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


class State:
    def __init__(self, tenant, client_id, secret):
        self.lock = threading.Lock()
        self.tenant, self.client_id, self.secret = tenant, client_id, secret
        self.tokens = {}  # token -> audience; issued tokens stay valid across resets, as in Entra
        self.reset()

    def reset(self):
        with self.lock:
            self.config = {"discovery": "ok", "scep_status": None, "unauthorized_once": False,
                           "intune_roles": ["scep_challenge_provider"], "token_delay_ms": 0, "token_expires_in": 3599,
                           "revocation_status": None, "revocation_delay_ms": 0,
                           "client_certificates": []}
            self.assertions = []
            self.jtis = set()
            self.revocation_queue = []
            self.revocation_uploads = []
            self.revocation_downloads = []
            self.token_log = []
            self.requests = []
            self.token_requests = {"intune": 0, "graph": 0}
            self.discoveries = 0
            self.in_flight = 0
            self.max_in_flight = 0


STATE = None


def jwt_part(value):
    raw = value.encode() if isinstance(value, str) else json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


SID_URI_PREFIX = "tag:microsoft.com,2022-09-14:sid:"


def sid_uris(csr_b64):
    csr = x509.load_der_x509_csr(base64.b64decode(csr_b64))
    try:
        names = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [uri for uri in names.get_values_for_type(x509.UniformResourceIdentifier) if uri.lower().startswith(SID_URI_PREFIX)]


def challenge_of(csr_b64):
    csr = x509.load_der_x509_csr(base64.b64decode(csr_b64))
    try:
        value = csr.attributes.get_attribute_for_oid(x509.oid.AttributeOID.CHALLENGE_PASSWORD).value
    except x509.AttributeNotFound:
        return ""
    return value.decode() if isinstance(value, bytes) else value


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def bearer(self):
        auth = self.headers.get("Authorization") or ""
        return STATE.tokens.get(auth[7:]) if auth.startswith("Bearer ") else None

    # -- routing ---------------------------------------------------------------------------------

    def do_GET(self):
        if self.path == "/_mock/state":
            with STATE.lock:
                return self.reply(200, {"requests": STATE.requests, "token_requests": STATE.token_requests, "token_log": STATE.token_log,
                                        "discoveries": STATE.discoveries, "max_in_flight": STATE.max_in_flight,
                                        "revocation_queue": STATE.revocation_queue, "revocation_uploads": STATE.revocation_uploads,
                                        "revocation_downloads": STATE.revocation_downloads, "assertions": STATE.assertions})
        if self.path == f"/v1.0/servicePrincipals/appId={INTUNE_APP}/endpoints":
            return self.discovery()
        self.reply(404, {"error": {"code": "NotFound", "message": "no such path"}})

    def do_POST(self):
        body = self.body()
        if self.path == "/_mock/config":
            with STATE.lock:
                STATE.config.update(json.loads(body))
            return self.reply(200, {"ok": True})
        if self.path == "/_mock/reset":
            STATE.reset()
            return self.reply(200, {"ok": True})
        if self.path.endswith("/oauth2/v2.0/token"):
            return self.token(self.path.split("/")[1], body)
        if self.path == "/_mock/revocations":
            with STATE.lock:
                STATE.revocation_queue.extend(json.loads(body)["requests"])
            return self.reply(200, {"ok": True})
        if self.path.startswith(PKI_PATH + "/CertificateAuthorityRequests/"):
            return self.revocation(self.path.rsplit("/", 1)[1], body)
        if self.path.startswith(SERVICE_PATH + "/ScepActions/"):
            return self.scep_action(self.path.rsplit("/", 1)[1], body)
        self.reply(404, {"error": {"code": "NotFound", "message": "no such path"}})

    # -- Entra ID --------------------------------------------------------------------------------

    def token(self, tenant, body):
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}

        def error(status, error, code, text):
            self.reply(status, {"error": error, "error_description": f"AADSTS{code}: {text}", "error_codes": [code],
                                "timestamp": "2026-11-26 00:00:00Z", "trace_id": "00000000-0000-0000-0000-000000000001",
                                "correlation_id": "00000000-0000-0000-0000-000000000002"})

        if tenant != STATE.tenant:
            return error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            return error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        if form.get("client_id") != STATE.client_id:
            return error(400, "unauthorized_client", 700016, "Application not found in the directory.")
        if "client_assertion" in form or "client_assertion_type" in form:
            token_url = f"https://127.0.0.1:{self.server.server_address[1]}/{tenant}/oauth2/v2.0/token"
            refusal = check_assertion(form, token_url)
            if refusal:
                return error(*refusal)
        elif form.get("client_secret") != STATE.secret:
            return error(401, "invalid_client", 7000215, "Invalid client secret provided.")
        scope = form.get("scope", "")
        if scope in INTUNE_SCOPES:
            audience, kind = INTUNE_AUDIENCE, "intune"
        elif scope in (GRAPH_SCOPE, f"https://127.0.0.1:{self.server.server_address[1]}/.default"):
            # This mock is also the (overridden) Graph endpoint, as a sovereign cloud's Graph would be.
            audience, kind = "https://graph.microsoft.com", "graph"
        else:
            return error(400, "invalid_scope", 70011, f"The provided value for scope {scope} is not valid.")
        with STATE.lock:
            STATE.token_requests[kind] += 1
            # An app-only access token as Entra issues it: a JWT whose `roles` claim lists the
            # application permissions granted with admin consent (scep_challenge_provider for Intune).
            roles = list(STATE.config["intune_roles"]) if kind == "intune" else ["Application.Read.All"]
            claims = {"aud": audience, "iss": f"https://sts.windows.net/{STATE.tenant}/", "appid": form.get("client_id"),
                      "idtyp": "app", "roles": roles, "exp": int(time.time()) + 3599,
                      "uti": f"{kind}-{STATE.token_requests[kind]}-{time.time_ns()}"}
            if not roles:
                del claims["roles"]  # Entra omits the claim when nothing is consented
            token = ".".join(jwt_part(part) for part in
                             [{"typ": "JWT", "alg": "RS256", "kid": "mock"}, claims, "mock-signature"])
            STATE.tokens[token] = audience
            delay, lifetime = STATE.config["token_delay_ms"], STATE.config["token_expires_in"]
            entry = {"kind": kind, "start": time.time()}
            STATE.token_log.append(entry)
        time.sleep(delay / 1000)  # a slow Entra
        entry["end"] = time.time()
        self.reply(200, {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token})

    # -- Microsoft Graph -------------------------------------------------------------------------

    def discovery(self):
        if self.bearer() != "https://graph.microsoft.com":
            return self.reply(401, {"error": {"code": "InvalidAuthenticationToken", "message": "Access token is empty."}})
        with STATE.lock:
            STATE.discoveries += 1
            mode = STATE.config["discovery"]
        if mode == "403":
            return self.reply(403, {"error": {"code": "Authorization_RequestDenied",
                                              "message": "Insufficient privileges to complete the operation."}})
        if mode == "500":
            return self.reply(500, {"error": {"code": "InternalServerError", "message": "oops"}})
        host = f"https://127.0.0.1:{self.server.server_address[1]}"
        services = [{"id": "4e2a0000-0000-0000-0000-000000000001", "deletedDateTime": None, "capability": "ScepRequestValidation",
                     "providerId": "0000000a-0000-0000-c000-000000000000", "providerName": "PkiConnectorFEService",
                     "providerResourceId": "x", "uri": f"{host}/RACerts/StatelessPkiConnectorService/Gateway/StatelessPkiConnectorService"}]
        if mode != "missing":
            services.append({"id": "4e2a0000-0000-0000-0000-000000000002", "deletedDateTime": None, "capability": "ScepRequestValidation",
                             "providerId": "0000000a-0000-0000-c000-000000000000", "providerName": "ScepRequestValidationFEService",
                             "providerResourceId": "y", "uri": host + SERVICE_PATH})
        self.reply(200, {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#servicePrincipals('x')/endpoints",
                         "value": services})

    # -- Intune PKI connector (revocation) -------------------------------------------------------

    def revocation(self, operation, body):
        status, payload = revocation_call(operation, {k.lower(): v for k, v in self.headers.items()}, body, self.bearer())
        self.reply(status, payload)

    # -- Intune ScepActions ----------------------------------------------------------------------

    def scep_action(self, operation, body):
        record = {"op": operation, "headers": {k.lower(): v for k, v in self.headers.items()}, "status": 0, "t": time.time()}
        try:
            record["body"] = json.loads(body)
        except ValueError:
            record["body"] = None
        with STATE.lock:
            STATE.requests.append(record)
            STATE.in_flight += 1
            STATE.max_in_flight = max(STATE.max_in_flight, STATE.in_flight)
            forced = STATE.config["scep_status"]
            unauthorized_once = STATE.config["unauthorized_once"]
            if unauthorized_once:
                STATE.config["unauthorized_once"] = False
        try:
            status, payload, ctype = self.decide(operation, record, forced, unauthorized_once)
        finally:
            with STATE.lock:
                STATE.in_flight -= 1
        record["status"] = status
        self.reply(status, payload, ctype)

    def decide(self, operation, record, forced, unauthorized_once):
        if self.bearer() != INTUNE_AUDIENCE or unauthorized_once:
            return 401, {"error": {"code": "Unauthorized", "message": "Authentication failed."}}, "application/json"
        h = record["headers"]
        if h.get("api-version") != "2018-02-20" or not h.get("client-request-id"):
            return 400, {"error": {"code": "BadRequest", "message": "api-version or client-request-id missing"}}, "application/json"
        if forced:
            return forced, {"error": {"code": "Forced", "message": f"forced {forced}"}}, "application/json"
        wrapper = (record["body"] or {}).get("request" if operation == "validateRequest" else "notification") or {}
        if not wrapper.get("transactionId") or not wrapper.get("certificateRequest"):
            return 400, {"error": {"code": "BadRequest", "message": "transactionId and certificateRequest are required"}}, "application/json"
        challenge = challenge_of(wrapper["certificateRequest"])
        record["challenge_kind"] = challenge.split("-", 1)[0]
        code = "Success"
        if operation == "validateRequest":
            if challenge.startswith(("ok-", "notifyfail-", "notifyslow-")):
                code = "Success"
            elif challenge.startswith("sidprofile-"):
                expected = SID_URI_PREFIX + challenge[len("sidprofile-"):]
                code = "Success" if sid_uris(wrapper["certificateRequest"]) == [expected] else "SubjectAltNameMismatch"
            elif challenge.startswith("code-"):
                code = challenge.split("-")[1]
            elif challenge.startswith("slow-"):
                time.sleep(int(challenge.split("-")[1]) / 1000)
            elif challenge.startswith("hang-"):
                time.sleep(60)
            elif challenge.startswith("http500-"):
                return 500, {"error": {"code": "InternalError", "message": "{\r\n  \"_version\": 3,\r\n  \"Message\": \"boom\"}"}}, "application/json"
            elif challenge.startswith("nonjson-"):
                return 200, b"<html><body>Service Unavailable</body></html>", "text/html"
            else:
                code = "ChallengeDecryptionError"
        elif operation == "successNotification" and challenge.startswith("notifyslow-"):
            time.sleep(int(challenge.split("-")[1]) / 1000)  # the certificate is stored, not yet audited
        elif operation == "successNotification" and challenge.startswith("notifyfail-"):
            return 500, {"error": {"code": "InternalError", "message": "notification store unavailable"}}, "application/json"
        description = "" if code == "Success" else f"mock: {code}"
        return 200, {"@odata.context": "https://fef.msuc05.manage.microsoft.com/RACerts/StatelessScepRequestValidationService/00000000-0000-0000-0000-000000000000/$metadata#microsoft.management.services.scepRequestValidationService.api.scepActionResult",
                     "code": code, "errorDescription": description}, "application/json"


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_assertion(form, token_url):
    """Entra's checks of a client assertion: None, or (status, error, AADSTS code, text)."""
    if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
        return 400, "invalid_request", 50027, "client_assertion_type must be jwt-bearer."
    assertion = form.get("client_assertion", "")
    with STATE.lock:
        STATE.assertions.append(assertion)
        registered = list(STATE.config["client_certificates"])
    parts = assertion.split(".")
    try:
        header, claims = json.loads(b64url_decode(parts[0])), json.loads(b64url_decode(parts[1]))
        signature = b64url_decode(parts[2])
    except (ValueError, IndexError):
        return 401, "invalid_client", 50027, "Invalid JWT token. The token is malformed."
    if len(parts) != 3 or header.get("alg") not in ("RS256", "PS256"):
        return 401, "invalid_client", 50027, "Invalid JWT token. Unsupported algorithm."
    certificate = None
    for pem in registered:
        cert = x509.load_pem_x509_certificate(pem.encode())
        der = cert.public_bytes(serialization.Encoding.DER)
        if header.get("x5t#S256") == base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode() or \
                header.get("x5t") == base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode():
            certificate = cert
    if certificate is None:
        return 401, "invalid_client", 700027, "Client assertion failed signature validation. The key was not found."
    pad = padding.PKCS1v15() if header["alg"] == "RS256" else padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH)
    try:
        certificate.public_key().verify(signature, f"{parts[0]}.{parts[1]}".encode(), pad, hashes.SHA256())
    except InvalidSignature:
        return 401, "invalid_client", 700027, "Client assertion failed signature validation."
    now = time.time()
    nbf, exp = claims.get("nbf"), claims.get("exp")
    if not isinstance(nbf, int) or not isinstance(exp, int) or nbf > now + 300 or exp < now or exp - nbf > 600:
        return 401, "invalid_client", 700024, "Client assertion is not within its valid time range."
    if claims.get("aud") != token_url:
        return 401, "invalid_client", 50027, f"Invalid JWT token. The audience must be {token_url}."
    if claims.get("iss") != STATE.client_id or claims.get("sub") != STATE.client_id:
        return 401, "invalid_client", 50027, "Invalid JWT token. iss and sub must be the client ID."
    with STATE.lock:
        if not claims.get("jti") or claims["jti"] in STATE.jtis:
            return 401, "invalid_client", 50027, "Invalid JWT token. The jti was used before."
        STATE.jtis.add(claims["jti"])
    return None


def revocation_call(operation, headers, body, audience):
    """The PKI connector's two calls: (status, payload)."""
    if audience != INTUNE_AUDIENCE:
        return 401, {"error": {"code": "Unauthorized", "message": "Authentication failed."}}
    if headers.get("api-version") != "5019-05-05" or not headers.get("client-request-id"):
        return 400, {"error": {"code": "BadRequest", "message": "api-version 5019-05-05 and client-request-id are required"}}
    with STATE.lock:
        forced, delay = STATE.config["revocation_status"], STATE.config["revocation_delay_ms"]
    time.sleep(delay / 1000)
    if forced:
        return forced, {"error": {"code": "Forced", "message": f"forced {forced}"}}
    try:
        payload = json.loads(body)
    except ValueError:
        return 400, {"error": {"code": "BadRequest", "message": "body is not JSON"}}
    with STATE.lock:
        if operation == "downloadRevocationRequests":
            parameters = payload.get("downloadParameters") or {}
            count = parameters.get("maxRequests")
            if not isinstance(count, int) or not 1 <= count <= 500:
                return 400, {"error": {"code": "BadRequest", "message": "maxRequests must be 1..500"}}
            page = STATE.revocation_queue[:count]
            issuer = parameters.get("issuerName")
            if issuer:
                page = [r for r in page if issuer.lower() in (r.get("caConfiguration") or "").lower()]
            STATE.revocation_downloads.append({"parameters": parameters, "returned": len(page), "headers": headers})
            return 200, {"@odata.context": "…/$metadata#Collection(microsoft.management.services.api.caRevocationRequest)", "value": page}
        if operation == "uploadRevocationResults":
            results = payload.get("results")
            if not isinstance(results, list) or not results:
                return 400, {"error": {"code": "BadRequest", "message": "results must be a non-empty list"}}
            STATE.revocation_uploads.append(results)
            done = {r["requestContext"] for r in results if str(r.get("errorCode")) not in RETRYABLE}
            STATE.revocation_queue = [r for r in STATE.revocation_queue if r["requestContext"] not in done]
            return 200, {"@odata.context": "…/$metadata#Edm.Boolean", "value": True}
    return 404, {"error": {"code": "NotFound", "message": operation}}


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def main():
    global STATE
    port, cert, key, tenant, client_id, secret_file = sys.argv[1:7]
    STATE = State(tenant, client_id, open(secret_file).read().strip())
    server = Server(("127.0.0.1", int(port)), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
