"""Schemathesis hooks for this server's OpenAPI document (SCHEMATHESIS_HOOKS).

tus uploads carry their bytes as `application/offset+octet-stream`, a media
type Schemathesis has no generator for: any bytes will do.
"""

from hypothesis import strategies as st

import schemathesis

schemathesis.openapi.media_type(
    "application/offset+octet-stream", st.binary(max_size=4096)
)
