"""Receiving checkpoint files over HTTP: multipart (browser, curl) and raw streaming PUT.

HashingUploadHandler replaces Django's default handlers for submissions: each file is written
once, to a temporary file under FILE_UPLOAD_TEMP_DIR, and hashed as its bytes arrive, so storing
it afterwards is a rename. A file part's checkpoint path is its field name after `path:`
(`path:tokenizer/vocab.json`), or else its file name, which Django reduces to a base name.

Nothing is staged before the caller is known to be allowed: a multipart body is checked when
its first file part begins (the `family` and `label` fields must come first, as browsers and
curl -F send them), against who is signed in, the family's owners and the declared size; a PUT
is checked (session, ownership, path, declared size) before its body is read at all. A refused
upload is answered at once, without reading the rest of the body.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.core.files.uploadhandler import FileUploadHandler, StopFutureHandlers, StopUpload
from django.core.exceptions import PermissionDenied
from django.http import UnreadablePostError
from django.http.multipartparser import MultiPartParser, MultiPartParserError

from models.blobstore import BulkWriter, FileTooLarge, StagedFile, format_size, stage_chunks
from models.errors import IncompleteUpload, SubmissionError, TooLarge

PATH_FIELD_PREFIX = "path:"
CHUNK = 1024 * 1024


class HashedTemporaryUploadedFile(TemporaryUploadedFile):
    sha256: str = ""
    checkpoint_path: str = ""


class HashingUploadHandler(FileUploadHandler):
    chunk_size = CHUNK

    def __init__(self, request=None):
        super().__init__(request)
        self.error: SubmissionError | None = None
        # Django calls upload_complete() only when the body parsed to its end; a parse that
        # stopped early (client gone, body truncated) leaves this False even if an earlier
        # reader of request.POST (the CSRF check) swallowed the error.
        self.completed = False
        self.created: list[HashedTemporaryUploadedFile] = []
        self.parser: MultiPartParser | None = None
        self.checked = False
        self.content_length = 0
        self._writer: BulkWriter | None = None

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.content_length = content_length or 0
        return None

    def _check_before_staging(self) -> None:
        """Before the first byte of the first file: may this caller submit this, this big?"""
        from models.services import check_submission_target

        self.checked = True
        fields = self.parser._post if self.parser is not None else {}
        limit = settings.STAGEGATE_MAX_CHECKPOINT_SIZE
        if self.content_length > limit:
            raise TooLarge(f"the upload declares {format_size(self.content_length)}, more than "
                           f"the {format_size(limit)} limit of one checkpoint "
                           "(STAGEGATE_MAX_CHECKPOINT_SIZE)")
        if not fields.get("family"):
            raise SubmissionError("send the family and label fields before the files (the "
                                  "family decides who may upload)")
        check_submission_target(actor=self.request.user,
                                family_name=fields.get("family", "").strip(),
                                label=fields.get("label", "").strip())

    # No `file` attribute until new_file(): MultiPartParser._close_files() calls .close() on it.

    def new_file(self, field_name, file_name, content_type, content_length, charset=None,
                 content_type_extra=None):
        if not self.checked:
            try:
                self._check_before_staging()
            except (SubmissionError, PermissionDenied) as exc:
                self.error = exc
                raise StopUpload(connection_reset=True) from None
        super().new_file(field_name, file_name, content_type, content_length, charset,
                         content_type_extra)
        self.file = HashedTemporaryUploadedFile(file_name, content_type, 0, charset,
                                                content_type_extra)
        self.created.append(self.file)
        self.file.checkpoint_path = (field_name[len(PATH_FIELD_PREFIX):]
                                     if field_name.startswith(PATH_FIELD_PREFIX) else file_name)
        self._writer = BulkWriter(self.file)
        self._size = 0
        raise StopFutureHandlers()

    def receive_data_chunk(self, raw_data, start):
        self._size += len(raw_data)
        limit = settings.STAGEGATE_MAX_FILE_SIZE
        if self._size > limit:
            self.error = TooLarge(f"{self.file.checkpoint_path}: file is larger than the "
                                  f"{format_size(limit)} limit (STAGEGATE_MAX_FILE_SIZE)")
            raise StopUpload(connection_reset=True)
        self._writer.put(raw_data)
        return None

    def upload_complete(self):
        self.completed = True

    def discard_all(self) -> None:
        """Close (and so delete) every temporary file this handler made. After a failed parse
        Django forgets the files it already completed, so they are closed here."""
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        for uploaded in self.created:
            try:
                uploaded.close()
            except OSError:
                pass

    def file_complete(self, file_size):
        self.file.sha256 = self._writer.finish()
        self._writer = None
        self.file.seek(0)
        self.file.size = file_size
        return self.file


def install_upload_handler(request) -> HashingUploadHandler:
    """Make HashingUploadHandler the only handler. Call it before anything reads request.POST
    (the CSRF check does), so that the body is parsed once, by this handler."""
    existing = getattr(request, "_stagegate_upload_handler", None)
    if existing is None:
        existing = handler = HashingUploadHandler(request)
        request._stagegate_upload_handler = handler
        if hasattr(request, "_files"):
            # Already parsed: a urlencoded form (read by the input check) carries no files, and
            # the caller refuses it for that with a message.
            return handler
        request.upload_handlers = [handler]

        def parse_file_upload(META, post_data):
            # Django's own parser, with a reference to it for the handler: the fields sent
            # before the first file are what the check before staging reads.
            parser = MultiPartParser(META, post_data, request.upload_handlers, request.encoding)
            handler.parser = parser
            return parser.parse()

        request.parse_file_upload = parse_file_upload
    return existing


def staged_from_multipart(request) -> tuple[dict[str, str], list[StagedFile]]:
    """Parse a multipart submission with HashingUploadHandler; return its fields and files.

    An interrupted or truncated body, or a file over the size limit, raises a SubmissionError and
    leaves no temporary file behind (Django deletes the temporary files when the request closes).
    """
    handler = install_upload_handler(request)
    if not request.content_type.startswith("multipart/form-data"):
        raise SubmissionError("send the checkpoint as multipart/form-data with fields family, "
                              "label and one part per file")
    try:
        fields = {key: request.POST.get(key, "") for key in request.POST}
        uploaded = [f for key in request.FILES for f in request.FILES.getlist(key)]
        if handler.error:
            raise handler.error
        if not handler.completed:
            raise IncompleteUpload("the upload was interrupted before all bytes arrived; "
                                   "nothing was stored, send it again")
    except (UnreadablePostError, OSError) as exc:
        handler.discard_all()
        raise IncompleteUpload(f"the upload was interrupted before all bytes arrived ({exc}); "
                               "nothing was stored, send it again") from None
    except MultiPartParserError as exc:
        handler.discard_all()
        raise IncompleteUpload(f"the upload is not a well-formed multipart body ({exc})") from None
    except (SubmissionError, PermissionDenied):
        handler.discard_all()
        raise
    staged = [StagedFile(path=f.checkpoint_path, sha256=f.sha256, size=f.size,
                         local_path=Path(f.temporary_file_path())) for f in uploaded]
    return fields, staged


def staged_from_body(request, path: str) -> StagedFile:
    """Stream a raw request body (PUT) into a staged file, hashing it once as it arrives."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        raise SubmissionError("a PUT of a file needs a Content-Length header") from None
    limit = settings.STAGEGATE_MAX_FILE_SIZE
    if declared > limit:
        raise TooLarge(f"{path}: {format_size(declared)} is larger than the {format_size(limit)} "
                       "limit (STAGEGATE_MAX_FILE_SIZE)")

    def chunks():
        while chunk := request.read(CHUNK):
            yield chunk

    try:
        staged = stage_chunks(path, chunks())
    except FileTooLarge as exc:
        raise TooLarge(str(exc)) from None
    except (UnreadablePostError, OSError) as exc:
        raise IncompleteUpload(f"{path}: the upload was interrupted ({exc}); send it again") from None
    if staged.size != declared:
        staged.discard()
        raise IncompleteUpload(f"{path}: received {staged.size} of {declared} bytes; send it again")
    return staged
