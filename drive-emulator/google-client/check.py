#!/usr/bin/env python3
"""Google's own Python client libraries against the Drive emulator.

Starts `tillmesh drive-emulator --auto-approve` on a free loopback port, signs
in with the device flow, then drives Drive v3 through google-api-python-client
and google-auth as an application would: about.get, folders, multipart and
chunked resumable uploads (also of unknown length, and resumed after a lost
answer), empty files, the app data folder, files.list with `q`, `fields` masks
and page tokens, a batch, files.get, chunked downloads with Range, update,
delete, a 404 in Google's error format, token refresh (asked for, and on an
expired token), and revocation. Every request goes to the emulator: the
discovery document is the one bundled with the library, and a name lookup of
any other host fails the check.

Usage: check.py [PATH_TO_TILLMESH]   (or $TILLMESH_BIN; default
target/debug/tillmesh of this workspace). Needs the packages of
requirements.txt beside this file. Exits 0 when everything matched; otherwise
prints what did not and exits 1.
"""

import datetime
import hashlib
import io
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

WORKSPACE = Path(__file__).resolve().parent.parent.parent
CLIENT_ID = "tillmesh-check.apps.googleusercontent.com"
CLIENT_SECRET = "check-secret"
SCOPES = [
    "https://www.googleapis.com/auth/drive.file",
    "https://www.googleapis.com/auth/drive.appdata",
]
QUOTA = 64 << 20
FOLDER_MIME = "application/vnd.google-apps.folder"


PASSED = []


class Mismatch(Exception):
    """The emulator answered something Google's client did not expect."""


def expect(cond, what):
    if not cond:
        raise Mismatch(what)


# Nothing may leave the machine: every name lookup is for the emulator's
# loopback address, or the check fails.
_LOOKUPS_REFUSED = []
_real_getaddrinfo = socket.getaddrinfo


def _loopback_only(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name not in ("127.0.0.1", "localhost"):
        _LOOKUPS_REFUSED.append(name)
        raise OSError(f"check.py reaches only the emulator on 127.0.0.1, not {name}")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _loopback_only


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_emulator(binary):
    """The emulator's process and root URL, once it answers."""
    last = ""
    for _ in range(3):
        port = free_port()
        errors = tempfile.TemporaryFile()
        proc = subprocess.Popen(
            [binary, "drive-emulator", "--bind", f"127.0.0.1:{port}",
             "--auto-approve", "--quota", str(QUOTA)],
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                errors.seek(0)
                last = errors.read().decode(errors="replace").strip()
                break
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return proc, f"http://127.0.0.1:{port}"
            except OSError:
                time.sleep(0.05)
        else:
            proc.kill()
            proc.wait()
            last = "it did not listen within 20 s"
    raise Mismatch(f"the emulator did not start: {last}")


def post_form(url, fields):
    """POST a form with the standard library; (status, JSON body)."""
    data = urllib.parse.urlencode(fields).encode()
    req = urllib.request.Request(url, data=data, method="POST")
    req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        body = e.read()
        status = e.code
    try:
        return status, json.loads(body) if body else {}
    except ValueError:
        return status, {"raw": body.decode(errors="replace")}


def device_sign_in(root):
    """The device flow of Google's "TVs and limited input devices" guide."""
    status, code = post_form(f"{root}/device/code",
                             {"client_id": CLIENT_ID, "scope": " ".join(SCOPES)})
    expect(status == 200, f"/device/code answered {status}: {code}")
    for key in ("device_code", "user_code", "verification_url", "expires_in", "interval"):
        expect(key in code, f"/device/code has no {key}: {code}")
    deadline = time.monotonic() + 30
    while True:
        status, tok = post_form(f"{root}/token", {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "device_code": code["device_code"],
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
        })
        if status == 200:
            break
        expect(tok.get("error") in ("authorization_pending", "slow_down"),
               f"polling /token answered {status}: {tok}")
        expect(time.monotonic() < deadline, "the device code was not approved within 30 s")
        time.sleep(code["interval"])
    for key in ("access_token", "refresh_token", "expires_in", "scope"):
        expect(key in tok, f"the token response has no {key}: {tok}")
    expect(tok.get("token_type", "").lower() == "bearer", f"token_type: {tok}")
    expect(set(tok["scope"].split()) == set(SCOPES), f"granted scopes: {tok['scope']}")
    return tok


def drive_service(root, creds):
    """Drive v3 from the discovery document bundled with the library.

    `client_options={"api_endpoint": ...}` moves only the JSON calls: the
    library builds upload URLs from the document's rootUrl and then swaps just
    their host for the endpoint's, keeping `https`, which a plain-HTTP server
    cannot take. So the bundled document gets the emulator as its rootUrl
    (uploads: rootUrl + "upload/" + servicePath), and api_endpoint names the
    same place for the rest.
    """
    from googleapiclient import discovery
    from googleapiclient.discovery_cache import get_static_doc

    text = get_static_doc("drive", "v3")
    expect(text is not None, "the library has no bundled drive v3 discovery document")
    doc = json.loads(text)
    doc["rootUrl"] = root + "/"
    doc["mtlsRootUrl"] = root + "/"
    service = discovery.build_from_document(
        doc,
        credentials=creds,
        client_options={"api_endpoint": f"{root}/{doc['servicePath']}"},
    )
    return service, doc.get("revision", "?")


def check_int64(resource, names, where):
    for n in names:
        if n in resource:
            expect(isinstance(resource[n], str) and resource[n].isdigit(),
                   f"{where}: {n} is {resource[n]!r}, not an int64 string")


def upload_classes():
    """A media source of unknown length, and a transport that loses answers."""
    from googleapiclient.http import MediaUpload

    class UnknownLength(MediaUpload):
        """Bytes from a pipe: the size is known only at the end."""

        def __init__(self, data, chunk):
            self.data, self._chunk = data, chunk

        def chunksize(self):
            return self._chunk

        def mimetype(self):
            return "application/octet-stream"

        def size(self):
            return None

        def resumable(self):
            return True

        def getbytes(self, begin, length):
            return self.data[begin:begin + length]

        def has_stream(self):
            return False

    class LoseAnswer:
        """Sends each request, but loses the answer of the Nth chunk PUT."""

        def __init__(self, http, after_puts):
            self.http, self.left = http, after_puts
            self.ranges, self.status_queries = [], 0

        def request(self, uri, method="GET", body=None, headers=None, **kwargs):
            rng = (headers or {}).get("Content-Range", "")
            if method == "PUT" and rng.startswith("bytes */"):
                self.status_queries += 1
            elif method == "PUT":
                self.ranges.append(rng)
            answer = self.http.request(uri, method=method, body=body, headers=headers, **kwargs)
            if method == "PUT" and rng and not rng.startswith("bytes */"):
                self.left -= 1
                if self.left == 0:
                    raise ConnectionResetError("the answer to a chunk was lost")
            return answer

    return UnknownLength, LoseAnswer


def run(binary):
    from importlib.metadata import version

    import google.auth.transport.requests
    import google.oauth2.credentials
    from google.auth import exceptions as auth_exceptions
    from googleapiclient.errors import HttpError
    from googleapiclient.http import MediaInMemoryUpload, MediaIoBaseDownload, MediaIoBaseUpload

    UnknownLength, LoseAnswer = upload_classes()

    def ok(what):
        PASSED.append(what)
        print(f"ok {len(PASSED):2} {what}")

    proc, root = start_emulator(binary)
    try:
        print(f"emulator {root}; google-api-python-client {version('google-api-python-client')},"
              f" google-auth {version('google-auth')}")
        tok = device_sign_in(root)
        ok("device flow: /device/code, then /token gives access and refresh tokens")

        creds = google.oauth2.credentials.Credentials(
            token=tok["access_token"],
            refresh_token=tok["refresh_token"],
            token_uri=f"{root}/token",
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            scopes=SCOPES,
            expiry=datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
            + datetime.timedelta(seconds=int(tok["expires_in"])),
        )
        # The usual way to build a client: JSON calls reach the emulator, but
        # upload URLs keep https (see drive_service).
        from googleapiclient.discovery import build

        plain = build("drive", "v3", credentials=creds, static_discovery=True,
                      client_options={"api_endpoint": f"{root}/drive/v3/"})
        user = plain.about().get(fields="user(emailAddress)").execute()
        expect("emailAddress" in user.get("user", {}), f"about.get through build(): {user}")
        upload_url = plain.files().create(body={}, media_body=MediaInMemoryUpload(b"")).uri
        ok("build(static_discovery=True, api_endpoint=EMULATOR/drive/v3/) reaches the emulator"
           f" for JSON calls (its upload URL would be {upload_url.split('?')[0]})")

        drive, revision = drive_service(root, creds)
        print(f"uploads too: the bundled discovery document (revision {revision})"
              " with the emulator as rootUrl")

        about = drive.about().get(fields="storageQuota,user").execute()
        expect(set(about) == {"storageQuota", "user"}, f"about.get fields: {sorted(about)}")
        quota = about["storageQuota"]
        check_int64(quota, ("limit", "usage", "usageInDrive", "usageInDriveTrash"), "storageQuota")
        expect(quota.get("limit") == str(QUOTA), f"storageQuota.limit: {quota}")
        expect(about["user"].get("emailAddress") and about["user"].get("me") is True,
               f"about.user: {about['user']}")
        ok("about.get(fields=storageQuota,user): quota as int64 strings, the user")

        folder = drive.files().create(
            body={"name": "google-client check", "mimeType": FOLDER_MIME},
            fields="id,name,mimeType,parents",
        ).execute()
        expect(folder.get("mimeType") == FOLDER_MIME and folder.get("id"), f"folder: {folder}")
        fid = folder["id"]
        ok("files.create: a folder, metadata only")

        # Bytes of every value, and line breaks at the end: the library writes
        # its multipart body with bare LF line breaks around them.
        small = b"till 7, day close: 3 sales\n" * 40 + bytes(range(256)) + b"\r\n\n"
        made = drive.files().create(
            body={"name": "small.txt", "parents": [fid], "appProperties": {"till": "7", "kind": "note"}},
            media_body=MediaInMemoryUpload(small, mimetype="text/plain", resumable=False),
            fields="id,name,size,md5Checksum,mimeType,parents,appProperties",
        ).execute()
        expect(made.get("size") == str(len(small)), f"multipart size: {made}")
        expect(made.get("md5Checksum") == hashlib.md5(small).hexdigest(), f"multipart md5: {made}")
        expect(made.get("mimeType") == "text/plain" and made.get("parents") == [fid], f"multipart: {made}")
        expect(made.get("appProperties") == {"till": "7", "kind": "note"}, f"appProperties: {made}")
        small_id = made["id"]
        ok("files.create: multipart upload (MediaInMemoryUpload, resumable=False)")

        big = random.Random(7).randbytes(3 * 1024 * 1024 + 19_980)
        chunk = 256 * 1024 * 4
        media = MediaIoBaseUpload(io.BytesIO(big), mimetype="application/octet-stream",
                                  chunksize=chunk, resumable=True)
        request = drive.files().create(
            body={"name": "big.bin", "parents": [fid]},
            media_body=media,
            fields="id,name,size,md5Checksum,sha256Checksum",
        )
        response, steps, progress = None, 0, []
        while response is None:
            status, response = request.next_chunk()
            steps += 1
            if status:
                progress.append(status.resumable_progress)
            expect(steps <= 10, "the resumable upload did not finish in 10 chunks")
        want_steps = -(-len(big) // chunk)
        expect(steps == want_steps, f"resumable upload took {steps} requests, expected {want_steps}")
        expect(progress == [chunk * i for i in range(1, want_steps)],
               f"progress after each chunk (from the 308 Range): {progress}")
        expect(response.get("size") == str(len(big)), f"resumable size: {response}")
        expect(response.get("md5Checksum") == hashlib.md5(big).hexdigest(), f"resumable md5: {response}")
        expect(response.get("sha256Checksum") == hashlib.sha256(big).hexdigest(),
               f"resumable sha256: {response}")
        big_id = response["id"]
        ok(f"files.create: resumable upload of {len(big)} bytes in {steps} chunks of {chunk} "
           "(MediaIoBaseUpload, 308 + Range, fields kept from the initiating request)")

        # A stream of unknown length ("bytes a-b/*" until the last chunk),
        # whose second chunk's answer is lost after the emulator kept it: the
        # library asks where the upload stands ("bytes */*") and goes on.
        stream = UnknownLength(big[:2 * chunk + 4321], chunk)
        request = drive.files().create(body={"name": "stream.bin", "parents": [fid]},
                                       media_body=stream, fields="id,size,md5Checksum")
        flaky = LoseAnswer(request.http, after_puts=2)
        response, steps, lost = None, 0, 0
        while response is None:
            try:
                _, response = request.next_chunk(http=flaky)
            except ConnectionResetError:
                lost += 1
            steps += 1
            expect(steps <= 10, "the stream upload did not finish in 10 requests")
        expect(lost == 1 and flaky.status_queries == 1,
               f"lost answers {lost}, status queries {flaky.status_queries}")
        expect(flaky.ranges[:2] == [f"bytes 0-{chunk - 1}/*", f"bytes {chunk}-{2 * chunk - 1}/*"],
               f"Content-Range of the stream's chunks: {flaky.ranges}")
        expect(response.get("size") == str(len(stream.data))
               and response.get("md5Checksum") == hashlib.md5(stream.data).hexdigest(),
               f"stream upload: {response}")
        ok("files.create: resumable upload of unknown length (bytes a-b/*), a lost answer "
           "resumed after a status query (bytes */*)")

        plain = drive.files().create(media_body=MediaInMemoryUpload(b"", mimetype="text/csv"),
                                     fields="id,name,size,mimeType").execute()
        expect(plain.get("size") == "0" and plain.get("mimeType") == "text/csv", f"media upload: {plain}")
        empty = drive.files().create(
            body={"name": "empty.bin", "parents": [fid]},
            media_body=MediaIoBaseUpload(io.BytesIO(b""), mimetype="application/octet-stream",
                                         chunksize=chunk, resumable=True),
            fields="id,size,md5Checksum",
        ).execute()
        expect(empty.get("size") == "0" and empty.get("md5Checksum") == hashlib.md5(b"").hexdigest(),
               f"empty resumable upload: {empty}")
        buf = io.BytesIO()
        down = MediaIoBaseDownload(buf, drive.files().get_media(fileId=empty["id"]))
        status, done = down.next_chunk()
        expect(done and status.total_size == 0 and buf.getvalue() == b"",
               f"empty download: {status.total_size} bytes, done {done}")
        drive.files().delete(fileId=plain["id"]).execute()
        drive.files().delete(fileId=empty["id"]).execute()
        ok("empty files: simple media upload, resumable upload without Content-Range, "
           "download answered 416 bytes */0")

        hidden = drive.files().create(
            body={"name": "config.json", "parents": ["appDataFolder"]},
            media_body=MediaInMemoryUpload(b"{}", mimetype="application/json"),
            fields="id,parents,spaces",
        ).execute()
        expect(hidden.get("spaces") == ["appDataFolder"], f"app data file: {hidden}")
        listed = drive.files().list(spaces="appDataFolder", fields="files(id,name)").execute()["files"]
        expect([f["id"] for f in listed] == [hidden["id"]], f"spaces=appDataFolder: {listed}")
        listed = drive.files().list(q="name = 'config.json'", fields="files(id)").execute()["files"]
        expect(listed == [], f"the app data file in the drive space: {listed}")
        ok("appDataFolder: create there, list with spaces=appDataFolder, hidden from the drive space")

        for i in range(3):
            drive.files().create(
                body={"name": f"note-{i}.txt", "parents": [fid]},
                media_body=MediaInMemoryUpload(f"note {i}".encode(), mimetype="text/plain"),
            ).execute()
        gone = drive.files().create(
            body={"name": "trashed.txt", "parents": [fid]},
            media_body=MediaInMemoryUpload(b"x", mimetype="text/plain"),
        ).execute()
        gone = drive.files().update(fileId=gone["id"], body={"trashed": True},
                                    fields="id,trashed").execute()
        expect(gone.get("trashed") is True, f"trashing by update: {gone}")
        q = f"'{fid}' in parents and trashed = false"
        fields = "nextPageToken,files(id,name,size,md5Checksum)"
        req = drive.files().list(q=q, pageSize=2, fields=fields, orderBy="name")
        names, pages = [], 0
        while req is not None:
            page = req.execute()
            pages += 1
            expect(set(page) <= {"nextPageToken", "files"}, f"list fields mask: {sorted(page)}")
            for f in page["files"]:
                expect(set(f) <= {"id", "name", "size", "md5Checksum"}, f"files(...) mask: {f}")
                check_int64(f, ("size",), f["name"])
            names += [f["name"] for f in page["files"]]
            req = drive.files().list_next(req, page)
            expect(pages <= 10, "paging did not end")
        want = ["big.bin", "note-0.txt", "note-1.txt", "note-2.txt", "small.txt", "stream.bin"]
        expect(names == want, f"list in the folder: {names}")
        expect(pages == 3, f"pageSize=2 over 6 files gave {pages} pages")
        expect(gone["id"] not in names, "a trashed file was listed with trashed = false")
        ok("files.list: q in parents and trashed = false, fields mask, pageSize=2 -> 3 pages (list_next)")

        hits = drive.files().list(q="name = 'big.bin' and trashed = false",
                                  fields="files(id,name)").execute()["files"]
        expect([h["id"] for h in hits] == [big_id], f"name = 'big.bin': {hits}")
        hits = drive.files().list(q="name contains 'note-' and mimeType = 'text/plain'",
                                  fields="files(name)").execute()["files"]
        expect(sorted(h["name"] for h in hits) == want[1:4], f"name contains 'note-': {hits}")
        ok("files.list: name =, name contains, mimeType = queries")

        results = {}

        def collect(request_id, response, exception):
            results[request_id] = exception if exception is not None else response

        batch = drive.new_batch_http_request(callback=collect)
        batch.add(drive.files().get(fileId=big_id, fields="id,name,size"), request_id="big")
        batch.add(drive.files().update(fileId=small_id, body={"description": "day close"},
                                       fields="id,name"), request_id="touch")
        batch.add(drive.files().get(fileId="1NoSuchFileInTheBatchXXXXXXXXXXXX", fields="id"),
                  request_id="missing")
        batch.add(drive.about().get(fields="user(emailAddress)"), request_id="about")
        batch.execute()
        expect(results.get("big") == {"id": big_id, "name": "big.bin", "size": str(len(big))},
               f"batch files.get: {results.get('big')}")
        expect(results.get("touch") == {"id": small_id, "name": "small.txt"},
               f"batch files.update: {results.get('touch')}")
        missing_in_batch = results.get("missing")
        expect(isinstance(missing_in_batch, HttpError) and missing_in_batch.status_code == 404
               and missing_in_batch.error_details[0].get("reason") == "notFound",
               f"batch 404: {missing_in_batch!r}")
        expect(results.get("about") == {"user": {"emailAddress": about["user"]["emailAddress"]}},
               f"batch about.get: {results.get('about')}")
        ok("batch (new_batch_http_request): files.get, files.update, a 404 and about.get in one request")

        meta = drive.files().get(
            fileId=big_id, fields="id,name,size,md5Checksum,mimeType,parents,version,modifiedTime"
        ).execute()
        expect(meta.get("md5Checksum") == hashlib.md5(big).hexdigest(), f"files.get md5: {meta}")
        expect(meta.get("size") == str(len(big)), f"files.get size: {meta}")
        check_int64(meta, ("size", "version"), "files.get")
        default = drive.files().get(fileId=big_id).execute()
        expect(set(default) == {"kind", "id", "name", "mimeType"}, f"default fields: {sorted(default)}")
        ok("files.get: fields with md5Checksum and size (hashlib agrees); default fields")

        buf = io.BytesIO()
        down = MediaIoBaseDownload(buf, drive.files().get_media(fileId=big_id), chunksize=512 * 1024)
        done, parts = False, 0
        while not done:
            status, done = down.next_chunk()
            parts += 1
            expect(status.total_size == len(big), f"download total size {status.total_size}")
            expect(parts <= 20, "the download did not end")
        expect(buf.getvalue() == big, "the downloaded bytes differ from the uploaded ones")
        want_parts = -(-len(big) // (512 * 1024))
        expect(parts == want_parts, f"download took {parts} Range requests, expected {want_parts}")
        small_back = drive.files().get_media(fileId=small_id).execute()
        expect(small_back == small, "get_media of the small file differs")
        ok(f"get_media + MediaIoBaseDownload: {parts} Range requests (206), bytes equal")

        upd = drive.files().update(
            fileId=small_id,
            body={"name": "renamed.txt", "appProperties": {"till": "8", "kind": None}},
            fields="id,name,appProperties,version",
        ).execute()
        expect(upd.get("name") == "renamed.txt", f"rename: {upd}")
        expect(upd.get("appProperties") == {"till": "8"}, f"appProperties after update: {upd}")
        newer = b"till 7, day close: 4 sales\n"
        upd = drive.files().update(
            fileId=small_id,
            media_body=MediaInMemoryUpload(newer, mimetype="text/plain"),
            fields="id,name,size,md5Checksum",
        ).execute()
        expect(upd.get("size") == str(len(newer)) and upd.get("md5Checksum") == hashlib.md5(newer).hexdigest(),
               f"new content: {upd}")
        expect(upd.get("name") == "renamed.txt", f"name after a content update: {upd}")
        ok("files.update: rename, appProperties set and cleared with null, new content (multipart PATCH)")

        drive.files().delete(fileId=small_id).execute()
        try:
            drive.files().get(fileId=small_id, fields="id").execute()
            raise Mismatch("files.get of a deleted file succeeded")
        except HttpError as e:
            expect(e.resp.status == 404, f"get after delete: {e.resp.status}")
        ok("files.delete, then files.get answers 404")

        missing = "1NoSuchFileIdAtAllXXXXXXXXXXXXXXX"
        try:
            drive.files().get(fileId=missing).execute()
            raise Mismatch("files.get of a missing id succeeded")
        except HttpError as e:
            expect(e.status_code == 404, f"missing id: status {e.status_code}")
            body = json.loads(e.content)
            err = body.get("error", {})
            expect(err.get("code") == 404, f"error.code: {body}")
            expect(err.get("message") == f"File not found: {missing}.", f"error.message: {body}")
            first = (err.get("errors") or [{}])[0]
            expect(first.get("reason") == "notFound" and first.get("domain") == "global",
                   f"errors[0]: {body}")
            expect(first.get("location") == "fileId" and first.get("locationType") == "parameter",
                   f"errors[0] location: {body}")
            expect(e.reason == f"File not found: {missing}.", f"HttpError.reason: {e.reason!r}")
            expect(isinstance(e.error_details, list) and e.error_details[0].get("reason") == "notFound",
                   f"HttpError.error_details: {e.error_details!r}")
        ok("files.get of a missing id: HttpError 404 with Google's error body (reason notFound)")

        before = creds.token
        creds.refresh(google.auth.transport.requests.Request())
        expect(creds.token and creds.token != before, "creds.refresh() did not give a new access token")
        expect(creds.refresh_token == tok["refresh_token"], "the refresh token changed on refresh")
        expect(creds.valid and creds.expiry is not None, "credentials not valid after refresh")
        drive.about().get(fields="user").execute()
        ok("creds.refresh(Request()): a new access token that Drive takes")

        before = creds.token
        creds.expiry = datetime.datetime(2000, 1, 1)
        drive.files().get(fileId=big_id, fields="id").execute()
        expect(creds.token != before and creds.valid,
               "an expired token was not refreshed before the request")
        ok("an expired token is refreshed by the library before the next request")

        status, body = post_form(f"{root}/revoke", {"token": creds.refresh_token})
        expect(status == 200, f"/revoke answered {status}: {body}")
        try:
            drive.files().get(fileId=big_id, fields="id").execute()
            raise Mismatch("Drive took an access token of a revoked grant")
        except HttpError as e:
            expect(e.status_code == 401, f"after revoke: status {e.status_code}")
        except auth_exceptions.RefreshError:
            pass
        try:
            creds.refresh(google.auth.transport.requests.Request())
            raise Mismatch("a revoked refresh token still refreshed")
        except auth_exceptions.RefreshError as e:
            expect("invalid_grant" in str(e), f"refresh after revoke: {e}")
        ok("POST /revoke: Drive then answers 401, refresh fails with invalid_grant")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    expect(not _LOOKUPS_REFUSED, f"requests were aimed at other hosts: {_LOOKUPS_REFUSED}")


def version_notes():
    """A line for each package installed at another version than the pin."""
    from importlib.metadata import PackageNotFoundError, version

    notes = []
    for line in (Path(__file__).parent / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" not in line:
            continue
        name, pinned = (x.strip() for x in line.split("==", 1))
        try:
            have = version(name)
        except PackageNotFoundError:
            have = "missing"
        if have != pinned:
            notes.append(f"note: {name} is {have} here; requirements.txt pins {pinned}")
    return notes


def main():
    sys.stdout.reconfigure(line_buffering=True)
    binary = (sys.argv[1] if len(sys.argv) > 1 else None) or os.environ.get("TILLMESH_BIN") \
        or str(WORKSPACE / "target" / "debug" / "tillmesh")
    if not os.access(binary, os.X_OK):
        print(f"check.py: no tillmesh binary at {binary} (build it with `cargo build -p tillmesh`,"
              " or pass its path)", file=sys.stderr)
        return 2
    try:
        import googleapiclient  # noqa: F401
        import google.oauth2.credentials  # noqa: F401
    except ImportError as e:
        print(f"check.py: {e}: pip3 install -r {Path(__file__).parent / 'requirements.txt'}",
              file=sys.stderr)
        return 2
    for note in version_notes():
        print(note)
    started = time.monotonic()
    try:
        run(binary)
    except Exception as e:  # noqa: BLE001 - a mismatch, or what a library raised
        if not isinstance(e, Mismatch):
            import traceback

            traceback.print_exc()
        print(f"FAILED after {len(PASSED)} steps: {type(e).__name__}: {e}", file=sys.stderr)
        print(f"google-client: {len(PASSED)} passed, 1 failed")
        return 1
    print(f"the emulator served Google's client libraries in {time.monotonic() - started:.1f}s")
    print(f"google-client: {len(PASSED)} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
