"""Streaming ``multipart/form-data`` reader: file bytes go to a sink chunk by chunk, never whole in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header

from app.errors import InvalidRequestError, PayloadTooLargeError, UnsupportedMediaTypeError

MAX_FIELD_BYTES = 64 * 1024  # text fields (purpose, ...)


@dataclass
class Form:
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    file_bytes: int = 0


async def read_multipart(content_type: str | None, body: AsyncIterator[bytes], file_field: str,
                         sink: Callable[[bytes], Awaitable[None]], max_body_bytes: int) -> Form:
    """Parse the form; the data of ``file_field`` is passed to ``sink`` as it arrives."""
    ctype, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise UnsupportedMediaTypeError("Upload the file as multipart/form-data (fields 'file' and 'purpose').")
    form = Form()
    state: dict = {"name": None, "filename": None, "headers": {}, "field": b"", "hname": b"", "hvalue": b""}
    out: list[bytes] = []  # file data produced by the last parser.write, flushed to the sink after it
    text: bytearray = bytearray()

    def on_part_begin() -> None:
        state.update(headers={}, name=None, filename=None, hname=b"", hvalue=b"")
        text.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["hname"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["hvalue"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["hname"].lower()] = state["hvalue"]
        state["hname"], state["hvalue"] = b"", b""

    def on_headers_finished() -> None:
        _, disp = parse_options_header(state["headers"].get(b"content-disposition", b""))
        state["name"] = (disp.get(b"name") or b"").decode("utf-8", "replace")
        filename = disp.get(b"filename")
        state["filename"] = filename.decode("utf-8", "replace") if filename is not None else None
        if state["name"] == file_field:
            form.filename = state["filename"] or "upload.jsonl"

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["name"] == file_field:
            out.append(data[start:end])
            form.file_bytes += end - start
        else:
            text.extend(data[start:end])
            if len(text) > MAX_FIELD_BYTES:
                raise InvalidRequestError(f"Form field {state['name']!r} is too long.")

    def on_part_end() -> None:
        if state["name"] and state["name"] != file_field:
            form.fields[state["name"]] = text.decode("utf-8", "replace")

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        "on_part_end": on_part_end})
    received = 0
    async for chunk in body:
        received += len(chunk)
        if received > max_body_bytes:
            raise PayloadTooLargeError(f"The upload is larger than the limit of {max_body_bytes} bytes.")
        try:
            parser.write(chunk)
        except MultipartParseError as exc:
            raise InvalidRequestError(f"Malformed multipart body ({exc}).") from None
        for piece in out:
            await sink(piece)
        out.clear()
    parser.finalize()
    for piece in out:
        await sink(piece)
    if form.filename is None:
        raise InvalidRequestError(f"The form has no '{file_field}' part.", param=file_field)
    return form
