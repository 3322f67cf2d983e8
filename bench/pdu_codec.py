"""Cost of the SMPP codec's hot path: decode + encode of a submit_sm and a deliver_sm.

The codec compiles each body into straight-line code for this path (see smpp/pdu.py);
run this before and after a change to it. Prints the best of several repeats, in
microseconds per decode+encode pair, so a busy machine's noise mostly drops out.

    .venv/bin/python bench/pdu_codec.py [--number 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import timeit

from smpp.pdu import CommandId, Pdu, Tag, decode, encode

SUBMIT_SM = Pdu.make(
    CommandId.submit_sm,
    2,
    source_addr_ton=5,
    source_addr="Shop",
    dest_addr_ton=1,
    dest_addr_npi=1,
    destination_addr="447700900123",
    registered_delivery=1,
    short_message=b"Hello, this is a fairly ordinary text message of some length",
    tlvs={Tag.user_message_reference: 7},
)
DELIVER_SM = Pdu.make(
    CommandId.deliver_sm,
    3,
    source_addr_ton=1,
    source_addr_npi=1,
    source_addr="447700900123",
    dest_addr_ton=5,
    destination_addr="Shop",
    esm_class=0x04,
    short_message=b"id:msg-0001 sub:001 dlvrd:001 submit date:2401011200 stat:DELIVRD err:000",
    tlvs={Tag.receipted_message_id: "msg-0001", Tag.message_state: 2},
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for name, pdu in (("submit_sm", SUBMIT_SM), ("deliver_sm", DELIVER_SM)):
        raw = encode(pdu)
        assert decode(raw) == pdu
        names = {"encode": encode, "decode": decode, "raw": raw}
        times = timeit.repeat(
            "encode(decode(raw))", globals=names, number=args.number, repeat=args.repeat
        )
        best = min(times)
        print(f"{name:<11} decode+encode {best / args.number * 1e6:.2f} us ({args.number} x)")


if __name__ == "__main__":
    main()
