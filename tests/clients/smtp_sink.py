"""A real SMTP server (aiosmtpd) for the email report tests.

    smtp_sink.py PORT_FILE OUT_DIR [--auth USER:PASSWORD]

Listens on 127.0.0.1 on a free port (written to PORT_FILE once ready). Each message received is
parsed with Python's standard `email` package (strict MIME parsing, policy=default) and written to
OUT_DIR as N.eml (the raw bytes) and N.json (envelope, headers, the parts' types, decoded text
bodies, attachment names and sizes), so the Rust test can check what arrived.
"""
import json
import os
import socket
import sys
import time
import warnings
from email import policy
from email.parser import BytesParser

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port_file, out_dir = sys.argv[1], sys.argv[2]
credentials = None
if len(sys.argv) > 4 and sys.argv[3] == "--auth":
    credentials = tuple(sys.argv[4].split(":", 1))
os.makedirs(out_dir, exist_ok=True)


def summarize(raw):
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    parts = []
    for part in msg.walk():
        entry = {
            "content_type": part.get_content_type(),
            "content_id": part.get("Content-ID"),
            "filename": part.get_filename(),
            "disposition": part.get_content_disposition(),
            "defects": [type(d).__name__ for d in part.defects],
        }
        if not part.is_multipart():
            payload = part.get_payload(decode=True) or b""
            entry["size"] = len(payload)
            if part.get_content_maintype() == "text":
                entry["text"] = payload.decode(part.get_content_charset() or "utf-8")
            elif part.get_content_type() == "image/png":
                entry["png_signature_ok"] = payload[:8] == b"\x89PNG\r\n\x1a\n"
        parts.append(entry)
    return {
        "subject": str(msg["Subject"]),
        "from": str(msg["From"]),
        "to": str(msg["To"]),
        "message_id": str(msg["Message-ID"]),
        "mime_version": str(msg["MIME-Version"]),
        "defects": [type(d).__name__ for d in msg.defects],
        "parts": parts,
    }


class Sink:
    count = 0

    async def handle_DATA(self, server, session, envelope):
        Sink.count += 1
        n = Sink.count
        raw = envelope.original_content or envelope.content
        with open(os.path.join(out_dir, f"{n}.eml"), "wb") as f:
            f.write(raw)
        summary = summarize(raw)
        summary["envelope_from"] = envelope.mail_from
        summary["envelope_to"] = envelope.rcpt_tos
        summary["authenticated_as"] = (
            session.auth_data.login.decode() if session.auth_data else None
        )
        tmp = os.path.join(out_dir, f".{n}.json")
        with open(tmp, "w") as f:
            json.dump(summary, f)
        os.rename(tmp, os.path.join(out_dir, f"{n}.json"))
        return "250 Message accepted for delivery"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (
        auth_data.login.decode(), auth_data.password.decode()
    ) == credentials
    return AuthResult(success=ok, auth_data=auth_data)


# Plain AUTH over loopback is what this test wants; aiosmtpd warns about it.
warnings.filterwarnings("ignore")
kwargs = {}
if credentials:
    # Plain-text AUTH is allowed here only because the test talks over loopback.
    kwargs = dict(authenticator=authenticator, auth_required=True, auth_require_tls=False)
# aiosmtpd connects to its own port to check it started, so it needs a concrete one.
probe = socket.socket()
probe.bind(("127.0.0.1", 0))
port = probe.getsockname()[1]
probe.close()
controller = Controller(Sink(), hostname="127.0.0.1", port=port, server_kwargs=kwargs)
controller.start()
with open(port_file + ".tmp", "w") as f:
    f.write(str(port))
os.rename(port_file + ".tmp", port_file)
try:
    while True:
        time.sleep(3600)
finally:
    controller.stop()
