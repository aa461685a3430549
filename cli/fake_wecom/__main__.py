"""Run the fake WeCom server: `python -m cli.fake_wecom --host 127.0.0.1 --port 8900`."""

from __future__ import annotations

import argparse

import uvicorn

from cli.fake_wecom.app import create_app
from cli.fake_wecom.state import FakeConfig, FakeWeCom


def main(argv: list[str] | None = None) -> None:
    defaults = FakeConfig()
    parser = argparse.ArgumentParser(prog="python -m cli.fake_wecom", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--callback-url", help="where /_fake/callbacks/... deliver by default")
    parser.add_argument("--corp-id", default=defaults.corp_id)
    parser.add_argument("--secret", default=defaults.secret)
    parser.add_argument("--app-secret", default=defaults.app_secret)
    parser.add_argument("--agent-id", type=int, default=defaults.agent_id)
    parser.add_argument("--callback-token", default=defaults.callback_token)
    parser.add_argument("--callback-aes-key", default=defaults.callback_aes_key)
    parser.add_argument("--token-ttl", type=int, default=defaults.token_ttl_seconds)
    parser.add_argument("--welcome-code-ttl", type=float, default=defaults.welcome_code_ttl_seconds)
    parser.add_argument(
        "--monthly-limit",
        type=int,
        default=None,
        help="mass messages a customer may receive a calendar month (default: no limit)",
    )
    args = parser.parse_args(argv)
    config = FakeConfig(
        corp_id=args.corp_id,
        secret=args.secret,
        app_secret=args.app_secret,
        agent_id=args.agent_id,
        callback_token=args.callback_token,
        callback_aes_key=args.callback_aes_key,
        callback_url=args.callback_url,
        token_ttl_seconds=args.token_ttl,
        welcome_code_ttl_seconds=args.welcome_code_ttl,
        mass_messages_per_customer_per_month=args.monthly_limit,
    )
    base = f"http://{args.host}:{args.port}"
    print(f"fake WeCom on {base}: SOPFLOW_WECOM_API_BASE={base}/cgi-bin")
    print(f"test hooks: {base}/_fake/docs")
    uvicorn.run(create_app(FakeWeCom(config)), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
