"""The release client: ``pypi-upload2 upload`` and ``pypi-upload2 session``.

It speaks Upload 2.0 (PEP 694) to any index that offers it and falls back to the legacy
form API otherwise; it needs no server configuration, only a repository URL and credentials.
"""
