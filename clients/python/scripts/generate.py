#!/usr/bin/env python3
"""Generates agent_server_client/protocol.py (TypedDicts, Literal aliases and the method tables)
from the JSON Schema bundle the schema crate exports. Standard library only.

    python scripts/generate.py           write the file
    python scripts/generate.py --check   fail when the committed file differs from a fresh one

The types are never edited by hand: change the Rust schema types, re-export the bundle, then run
this script.
"""

from __future__ import annotations

import argparse
import json
import keyword
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE_ROOT = HERE.parent
SCHEMA = PACKAGE_ROOT.parent.parent / "schema" / "json" / "agent-server.schema.json"
OUTPUT = PACKAGE_ROOT / "agent_server_client" / "protocol.py"
COMMAND = "python clients/python/scripts/generate.py"
REF_PREFIX = "#/$defs/"


class SchemaError(Exception):
    """A schema construct this generator does not know how to turn into Python."""


def pascal(name: str) -> str:
    return name[:1].upper() + name[1:]


def is_string_enum(schema: dict) -> bool:
    variants = schema.get("oneOf")
    return isinstance(variants, list) and all(
        v.get("type") == "string" and "const" in v for v in variants
    )


def tagged_variants(schema: dict) -> list[dict] | None:
    """The variants of a union tagged by a `type` constant, or None."""
    variants = schema.get("oneOf")
    if not isinstance(variants, list) or not variants:
        return None
    for v in variants:
        tag = v.get("properties", {}).get("type", {}).get("const")
        if v.get("type") != "object" or not isinstance(tag, str):
            return None
    return variants


def variant_name(def_name: str, variant: dict) -> str:
    return pascal(variant["properties"]["type"]["const"]) + def_name


def docstring(text: str | None, indent: str) -> list[str]:
    if not text:
        return []
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    lines = text.strip().splitlines()
    if len(lines) == 1:
        return [f'{indent}"""{lines[0]}"""']
    return [f'{indent}"""{lines[0]}'] + [f"{indent}{line}" if line else "" for line in lines[1:]] + [f'{indent}"""']


def comment(text: str | None, indent: str) -> list[str]:
    if not text:
        return []
    return [f"{indent}#: {line}".rstrip() for line in text.strip().splitlines()]


class Generator:
    def __init__(self, schema: dict) -> None:
        self.schema = schema
        self.defs: dict[str, dict] = schema["$defs"]

    def type_of(self, schema: dict, where: str) -> str:
        """The Python annotation for a property schema."""
        if schema is True:
            # Any JSON value (a `serde_json::Value` on the Rust side).
            return "Any"
        if "$ref" in schema:
            ref = schema["$ref"]
            if not ref.startswith(REF_PREFIX):
                raise SchemaError(f"{where}: unsupported $ref {ref}")
            return ref[len(REF_PREFIX):]
        if "allOf" in schema and len(schema["allOf"]) == 1:
            return self.type_of(schema["allOf"][0], where)
        if "anyOf" in schema:
            parts = [self.type_of(s, where) for s in schema["anyOf"]]
            return " | ".join(dict.fromkeys(parts))
        if "const" in schema:
            return f"Literal[{json.dumps(schema['const'])}]"
        kind = schema.get("type")
        if kind is None:
            return "Any"
        kinds = kind if isinstance(kind, list) else [kind]
        parts = []
        for k in kinds:
            if k == "string":
                parts.append("str")
            elif k == "integer":
                parts.append("int")
            elif k == "number":
                parts.append("float")
            elif k == "boolean":
                parts.append("bool")
            elif k == "null":
                parts.append("None")
            elif k == "array":
                items = schema.get("items")
                parts.append(f"list[{self.type_of(items, where) if items else 'Any'}]")
            elif k == "object":
                if schema.get("properties"):
                    raise SchemaError(f"{where}: inline object with properties; give it a $defs entry")
                parts.append("dict[str, Any]")
            else:
                raise SchemaError(f"{where}: unsupported type {k}")
        return " | ".join(parts)

    def typed_dict(self, name: str, schema: dict) -> list[str]:
        props: dict[str, dict] = schema.get("properties", {})
        required = set(schema.get("required", []))
        for field in props:
            if keyword.iskeyword(field) or not field.isidentifier():
                raise SchemaError(f"{name}.{field}: not usable as a TypedDict field name")
        lines: list[str] = []

        def fields(keys: list[str]) -> list[str]:
            out: list[str] = []
            for key in keys:
                prop = props[key]
                out += comment(prop.get("description"), "    ")
                out.append(f"    {key}: {self.type_of(prop, f'{name}.{key}')}")
            return out

        req = [k for k in props if k in required]
        opt = [k for k in props if k not in required]
        # Python 3.10 has no `Required`/`NotRequired`: required keys live in a base class and the
        # optional ones in a `total=False` subclass.
        if req and opt:
            base = f"_{name}Required"
            lines += [f"class {base}(TypedDict):"]
            lines += fields(req)
            lines += ["", ""]
            lines += [f"class {name}({base}, total=False):"]
            lines += docstring(schema.get("description"), "    ")
            lines += fields(opt)
        else:
            total = "" if req or not opt else ", total=False"
            lines += [f"class {name}(TypedDict{total}):"]
            lines += docstring(schema.get("description"), "    ")
            lines += fields(req or opt)
            if not props and not schema.get("description"):
                lines.append("    pass")
        return lines

    def module(self) -> str:
        aliases: list[str] = []
        classes: list[str] = []
        unions: list[str] = []
        names: list[str] = []
        for name, schema in self.defs.items():
            names.append(name)
            if is_string_enum(schema):
                values = ", ".join(json.dumps(v["const"]) for v in schema["oneOf"])
                aliases += comment(schema.get("description"), "")
                aliases += [f"{name} = Literal[{values}]", ""]
                continue
            variants = tagged_variants(schema)
            if variants is not None:
                members = []
                for v in variants:
                    vname = variant_name(name, v)
                    names.append(vname)
                    members.append(vname)
                    classes += self.typed_dict(vname, v) + ["", ""]
                unions += comment(schema.get("description"), "")
                unions += [f"{name} = Union[{', '.join(members)}]", ""]
                continue
            if schema.get("type") == "object":
                classes += self.typed_dict(name, schema) + ["", ""]
                continue
            refs = schema.get("anyOf")
            if isinstance(refs, list) and refs and all("$ref" in r for r in refs):
                # An untagged union of named types.
                unions += comment(schema.get("description"), "")
                unions += [f"{name} = Union[{', '.join(self.type_of(r, name) for r in refs)}]", ""]
                continue
            raise SchemaError(f"{name}: unsupported definition")

        methods = self.schema["x-methods"]
        notifications = self.schema["x-notifications"]

        def spec(entry: dict, key: str) -> str:
            sub = entry.get(key)
            return "None" if sub is None else json.dumps(self.type_of(sub, entry["method"]))

        tables = [
            "#: The protocol version these types describe.",
            f"PROTOCOL_VERSION = {json.dumps(self.schema['x-protocolVersion'])}",
            "",
        ]
        for title, direction, entries, is_request in [
            ("CLIENT_REQUESTS", "clientToServer", methods, True),
            ("SERVER_REQUESTS", "serverToClient", methods, True),
            ("CLIENT_NOTIFICATIONS", "clientToServer", notifications, False),
            ("SERVER_NOTIFICATIONS", "serverToClient", notifications, False),
        ]:
            chosen = [e for e in entries if e["direction"] == direction]
            if is_request:
                tables.append("#: Method name -> (params type name, result type name).")
                tables.append(f"{title}: dict[str, tuple[str, str]] = {{")
                tables += [
                    f"    {json.dumps(e['method'])}: ({spec(e, 'params')}, {spec(e, 'result')}),"
                    for e in chosen
                ]
                tables.append("}")
            else:
                tables.append("#: Method name -> params type name.")
                tables.append(f"{title}: dict[str, str] = {{")
                tables += [f"    {json.dumps(e['method'])}: {spec(e, 'params')}," for e in chosen]
                tables.append("}")
            literal = title.replace("CLIENT_", "Client").replace("SERVER_", "Server")
            literal = literal.replace("REQUESTS", "RequestMethod").replace("NOTIFICATIONS", "NotificationMethod")
            tables.append(f"{literal} = Literal[")
            tables += [f"    {json.dumps(e['method'])}," for e in chosen]
            tables.append("]")
            tables.append("")

        exports = sorted(
            names
            + ["PROTOCOL_VERSION", "CLIENT_REQUESTS", "SERVER_REQUESTS", "CLIENT_NOTIFICATIONS", "SERVER_NOTIFICATIONS"]
            + ["ClientRequestMethod", "ServerRequestMethod", "ClientNotificationMethod", "ServerNotificationMethod"]
        )
        header = [
            f"# @generated by `{COMMAND}` from schema/json/agent-server.schema.json; do not edit.",
            '"""Wire types of the agent-server protocol, generated from its JSON Schema."""',
            "",
            "from __future__ import annotations",
            "",
            "from typing import Any, Literal, TypedDict, Union",
            "",
            "__all__ = [",
            *[f"    {json.dumps(n)}," for n in exports],
            "]",
            "",
        ]
        body = header + aliases + [""] + classes + unions + [""] + tables
        text = "\n".join(body)
        # Collapse runs of blank lines to at most two, and end with exactly one newline.
        while "\n\n\n\n" in text:
            text = text.replace("\n\n\n\n", "\n\n\n")
        return text.rstrip("\n") + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when protocol.py is out of date")
    parser.add_argument("--schema", type=Path, default=SCHEMA, help="the JSON Schema bundle")
    args = parser.parse_args()
    schema = json.loads(args.schema.read_text(encoding="utf-8"))
    try:
        text = Generator(schema).module()
    except SchemaError as error:
        print(f"cannot generate protocol.py: {error}", file=sys.stderr)
        return 1
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(
                f"{OUTPUT.relative_to(PACKAGE_ROOT.parent.parent)} is out of date with the schema; "
                f"run `{COMMAND}` and commit the result",
                file=sys.stderr,
            )
            return 1
        print("generated Python types are up to date")
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(PACKAGE_ROOT.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
