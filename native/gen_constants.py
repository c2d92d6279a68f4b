"""Writes src/vsc_provider/ck/oasis_constants.py from the vendored OASIS header native/oasis/pkcs11t.h.

Run by hand after replacing the headers (not at build time): `.venv/bin/python native/gen_constants.py`, or with
`--check` to fail when the generated module is out of date. Every object-like `#define` whose name starts with
CK or CRYPTOKI becomes one Python constant. Values are C constant expressions of type CK_ULONG; they are
evaluated by a small parser (integer literals with U/L suffixes, names defined earlier, `~`, `<<`, `|` and
parentheses), never by eval, and anything else is refused with the header line named.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = ROOT / "native" / "oasis" / "pkcs11t.h"
OUTPUT = ROOT / "src" / "vsc_provider" / "ck" / "oasis_constants.py"
ULONG_MASK = (1 << 64) - 1  # CK_ULONG is unsigned long: 64 bits on the LP64 platforms the module is built for
LINE_LENGTH = 120

_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_DEFINE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+([A-Za-z_]\w*)(\(?)(.*)$", re.M)
_TOKEN = re.compile(r"\s*(?:(0[xX][0-9A-Fa-f]+|\d+)[uUlL]*(?![\w])|([A-Za-z_]\w*)|(<<|[|~()]))")
_WANTED = re.compile(r"^(CK|CRYPTOKI)")


@dataclass(frozen=True)
class Define:
    name: str
    value: int
    source: str  # the value as the header writes it, comments removed


class ExpressionError(ValueError):
    """A #define value outside the small grammar this generator evaluates."""


def tokens(text: str) -> list[str]:
    """The expression's tokens; literals keep their digits and lose their U/L suffixes."""
    found: list[str] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise ExpressionError(f"cannot read {text[pos:]!r}")
        found.append(next(g for g in match.groups() if g is not None))
        pos = match.end()
    return found


class _Parser:
    """or := shift ('|' shift)*; shift := unary ('<<' unary)*; unary := '~' unary | '(' or ')' | literal | name."""

    def __init__(self, items: list[str], known: dict[str, int]) -> None:
        self.items = items
        self.pos = 0
        self.known = known

    def parse(self) -> int:
        if not self.items:
            raise ExpressionError("empty value")
        value = self._or()
        if self.pos != len(self.items):
            raise ExpressionError(f"unexpected {self.items[self.pos]!r}")
        return value

    def _peek(self) -> str | None:
        return self.items[self.pos] if self.pos < len(self.items) else None

    def _take(self) -> str:
        item = self._peek()
        if item is None:
            raise ExpressionError("value ends too early")
        self.pos += 1
        return item

    def _or(self) -> int:
        value = self._shift()
        while self._peek() == "|":
            self.pos += 1
            value |= self._shift()
        return value

    def _shift(self) -> int:
        value = self._unary()
        while self._peek() == "<<":
            self.pos += 1
            value = (value << self._unary()) & ULONG_MASK
        return value

    def _unary(self) -> int:
        item = self._take()
        if item == "~":
            return ~self._unary() & ULONG_MASK
        if item == "(":
            value = self._or()
            if self._take() != ")":
                raise ExpressionError("missing )")
            return value
        if item[0].isdigit():
            return int(item, 16) if item[:2] in ("0x", "0X") else int(item, 10)
        if item in self.known:
            return self.known[item]
        raise ExpressionError(f"unknown name {item!r}")


def evaluate(text: str, known: dict[str, int]) -> int:
    """The CK_ULONG value of a #define's text, using the values of names defined before it."""
    return _Parser(tokens(text), known).parse()


def parse_header(text: str) -> list[Define]:
    """The header's CK*/CRYPTOKI* constants in the order it defines them."""
    text = _COMMENT.sub(lambda m: " " + "\n" * m.group().count("\n"), text)  # keep the line structure
    text = text.replace("\\\n", " ")
    known: dict[str, int] = {}
    found: list[Define] = []
    for match in _DEFINE.finditer(text):
        name, function_like, value = match.groups()
        if function_like or not _WANTED.match(name):
            continue
        if name in known:
            raise ExpressionError(f"{name} is defined twice")
        try:
            known[name] = evaluate(value, known)
        except ExpressionError as err:
            raise ExpressionError(f"#define {name} {value.strip()}: {err}") from None
        found.append(Define(name, known[name], " ".join(value.split())))
    return found


def notice(text: str) -> list[str]:
    """The header's leading comment (its copyright and IPR notice), line by line without the comment markers."""
    match = re.match(r"\s*/\*(.*?)\*/", text, re.S)
    if match is None:
        raise ExpressionError("the header has no leading notice")
    lines = [re.sub(r"^\s*(\* ?)?", "", line).rstrip() for line in match.group(1).splitlines()]
    return [line for line in lines if line]


def _literal(define: Define) -> str | None:
    """The header's own literal as Python source when the value is one literal, else None."""
    single = tokens(define.source)
    if len(single) != 1 or not single[0][0].isdigit():
        return None
    digits = single[0]
    return "0x" + digits[2:].upper() if digits[:2] in ("0x", "0X") else str(int(digits, 10))


def render(header_text: str) -> str:
    """The generated module's text."""
    lines = [
        "# Generated by native/gen_constants.py from native/oasis/pkcs11t.h (OASIS PKCS#11 3.2): do not edit.",
        "# Regenerate with `.venv/bin/python native/gen_constants.py` after replacing the vendored headers.",
        "#",
        "# The values are taken from pkcs11t.h, whose notice follows:",
        *(f"#   {line}" for line in notice(header_text)),
        '"""The PKCS#11 3.2 constants as the OASIS header pkcs11t.h defines them (CK_ULONG values, 64-bit)."""',
        "",
    ]
    for define in parse_header(header_text):
        literal = _literal(define)
        line = f"{define.name} = {literal or f'0x{define.value:X}'}"
        if literal is None:  # an expression or another name: say which
            comment = f"  # {define.source}"
            if len(line) + len(comment) <= LINE_LENGTH:
                line += comment
            else:
                lines.append(f"# {define.source}")
        lines.append(line)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if the generated module is out of date")
    args = parser.parse_args(argv)
    text = render(HEADER.read_text(encoding="utf-8"))
    if args.check:
        if OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT.relative_to(ROOT)} is out of date: run native/gen_constants.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
