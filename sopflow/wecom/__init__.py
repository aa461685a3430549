"""WeCom (企业微信) protocol: callback crypto, callback parsing, API shapes and error codes.

Pure code with no I/O: the HTTP client lives in `worker.wecom`, the fake server used by
tests and `make dev` in `cli.fake_wecom`.
"""
