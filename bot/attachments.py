"""Uploading a file encrypted and describing it as an `m.file`, for exports.

nio's `upload(..., encrypt=True)` does the AES-CTR encryption and returns the key, IV and
hash; the message carries them in the spec's EncryptedFile `file` object, so only the room's
members can decrypt the file. The media repository sees ciphertext and no file name.
"""

from __future__ import annotations

import io
from typing import Any

from nio import AsyncClient, ErrorResponse, UploadResponse

from rooms.exports import Attachment


async def upload_encrypted(
    client: AsyncClient, attachment: Attachment
) -> dict[str, Any] | ErrorResponse:
    """The `m.file` content for an uploaded attachment, or the homeserver's error."""
    response, keys = await client.upload(
        io.BytesIO(attachment.data),
        content_type="application/octet-stream",
        encrypt=True,
        filesize=len(attachment.data),
    )
    if isinstance(response, ErrorResponse):
        return response
    if not isinstance(response, UploadResponse) or keys is None:
        raise RuntimeError(f"unexpected upload response {type(response).__name__}")
    return {
        "msgtype": "m.file",
        "body": attachment.filename,
        "filename": attachment.filename,
        "info": {"mimetype": attachment.mimetype, "size": len(attachment.data)},
        "file": {"url": response.content_uri, **keys},
        "m.mentions": {},
    }
