"""Coverage-guided fuzzing of the webhook transports' parse() with atheris (libFuzzer), run by hand.

Hypothesis (tests/test_hostile.py) generates structured hostile messages; atheris mutates bytes
guided by which lines of defusedxml, wechatpy and bot/wechat.py they reach, which finds inputs nobody
thought to write (an XML declaration naming another encoding was one). Every input goes in three
ways: as a plaintext body (correctly signed query), as the plaintext of an Official Account safe-mode
ciphertext, and as the plaintext of a WeCom ciphertext. Anything but a Parsed or a ProtocolError
with a 4xx is a crash, and libFuzzer saves the input (crash-*) to replay:

    pip install atheris   # or: pip install -e '.[fuzz]'
    .venv/bin/python benchmarks/fuzz_webhook.py -max_total_time=300 -max_len=4096
    .venv/bin/python benchmarks/fuzz_webhook.py crash-<hash>       # replay one input
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import atheris

with atheris.instrument_imports(include=["bot", "wechatpy", "defusedxml", "xmltodict"]):
    from wechatpy.crypto import PrpCrypto

    from bot.wechat import ProtocolError, WeChatTransport, sha1_signature
    from bot.wecom import WeComTransport

TOKEN, APPID, AES_KEY = "fuzz-token", "wx1234567890abcdef", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
CORP_ID = "ww1234567890abcdef"
NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
TS = str(int(NOW.timestamp()))

PLAIN = WeChatTransport(token=TOKEN, appid=APPID, aes_key="", replay_window=300, max_body=64 * 1024)
SAFE = WeChatTransport(token=TOKEN, appid=APPID, aes_key=AES_KEY, replay_window=300, max_body=64 * 1024)
WECOM = WeComTransport(
    token=TOKEN, corp_id=CORP_ID, aes_key=AES_KEY, agent_id=1000005, replay_window=300, max_body=64 * 1024
)
assert SAFE.crypto is not None


def _ok(call: object) -> None:
    try:
        call()  # type: ignore[operator]
    except ProtocolError as exc:
        if exc.status not in (400, 403, 413):
            raise


def one_input(data: bytes) -> None:
    # A fresh nonce per input: the plaintext transport refuses a signed query that came with another body.
    nonce = str(hash(data) & 0xFFFFFFFF)
    plain_query = {"timestamp": TS, "nonce": nonce, "signature": sha1_signature(TOKEN, TS, nonce)}
    _ok(lambda: PLAIN.parse(plain_query, data, NOW))
    if len(data) > 2000:
        return
    encrypt = PrpCrypto(SAFE.crypto.key).encrypt(data, APPID).decode()
    safe_query = {**plain_query, "encrypt_type": "aes", "msg_signature": sha1_signature(TOKEN, TS, nonce, encrypt)}
    envelope = f"<xml><ToUserName>gh</ToUserName><Encrypt>{encrypt}</Encrypt></xml>".encode()
    _ok(lambda: SAFE.parse(safe_query, envelope, NOW))
    encrypt = PrpCrypto(WECOM.crypto.key).encrypt(data, CORP_ID).decode()
    wecom_query = {"timestamp": TS, "nonce": nonce, "msg_signature": sha1_signature(TOKEN, TS, nonce, encrypt)}
    envelope = f"<xml><ToUserName>{CORP_ID}</ToUserName><Encrypt>{encrypt}</Encrypt></xml>".encode()
    _ok(lambda: WECOM.parse(wecom_query, envelope, NOW))


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
