"""Message types for writing and reading bags: the one typestore module of the suite.

Writing (the recorder, repair, test bags) needs the text definition and RIHS01 hash of every
type: :func:`make_typestore` and :class:`RecordingTypestore` give rosbags' ROS 2 Kilted
typestore plus ``robot_training_msgs`` (and any other interface package a topic uses),
registered from their ``.msg`` text, found in the ament index
(``<prefix>/share/<pkg>/msg/<Type>.msg``) or, for our own package, in the source tree.

Reading (the dataset loader, ``bags info``, repair) goes through :data:`CATALOG`: a topic is
decoded with the definition **the bag carries** (MCAP schema, sqlite3 ``message_definitions``)
when it has one, even where the Kilted store knows a newer one; else with the definitions of
the ROS 2 distribution the bag was recorded on (named in it, or implied by its format
versions), then of the other distributions, newest first, then of a ``.msg`` file. The first
definition that decodes the topic's first message exactly (no byte short, none left over) is
kept. Decoders are plain Python functions generated once per distinct definition (fixed
fields read with one ``struct`` call per run, numeric arrays as NumPy views) and shared by
every bag that uses it; they return light objects whose attributes are the fields.

Only text files are read: nothing named by a topic or a bag is imported or run.
"""

from __future__ import annotations

import keyword
import re
import struct
import threading
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np
from rosbags.interfaces import Nodetype
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from robot_training.recording.episode_meta import EPISODE_EVENT_TYPE
from robot_training.utils.files import ament_prefixes

OWN_PACKAGE = 'robot_training_msgs'
# pkg/msg/Type, the only form a recorded topic type may take.
MSGTYPE_RE = re.compile(r'^[A-Za-z][A-Za-z0-9_]*/msg/[A-Z][A-Za-z0-9_]*$')
_FIELD_RE = re.compile(r'[A-Za-z][A-Za-z0-9_]*')

_SOURCE_MSG_DIR = Path(__file__).resolve().parents[2] / OWN_PACKAGE / 'msg'
DISTROS = ('kilted', 'jazzy', 'iron', 'humble', 'galactic', 'foxy')
"""The distributions whose definitions a bag without its own may use, newest first."""


class UnknownMessageType(LookupError):
    """A type with no definition in the typestore, the ament index or the source tree."""


def valid_msgtype(name: str) -> bool:
    """True for a well-formed ``pkg/msg/Type`` name."""
    return bool(MSGTYPE_RE.match(name))


def find_msg_file(msgtype: str, extra_dirs: Iterable[Path] = ()) -> Optional[Path]:
    """The ``.msg`` file of ``pkg/msg/Type`` in the ament index (or given dirs), or None."""
    if not valid_msgtype(msgtype):
        return None
    pkg, _, name = msgtype.split('/')
    candidates = [prefix / 'share' / pkg / 'msg' / f'{name}.msg' for prefix in ament_prefixes()]
    candidates += [Path(d) / f'{name}.msg' for d in extra_dirs]
    if pkg == OWN_PACKAGE:
        candidates.append(_SOURCE_MSG_DIR / f'{name}.msg')
    for path in candidates:
        if path.is_file():
            return path
    return None


def _own_msg_dir() -> Optional[Path]:
    if _SOURCE_MSG_DIR.is_dir():
        return _SOURCE_MSG_DIR
    for prefix in ament_prefixes():
        d = prefix / 'share' / OWN_PACKAGE / 'msg'
        if d.is_dir():
            return d
    return None


def make_typestore() -> Typestore:
    """A fresh rosbags ROS 2 Kilted typestore plus every ``robot_training_msgs`` type."""
    store = get_typestore(Stores.ROS2_KILTED)
    msg_dir = _own_msg_dir()
    if msg_dir is not None:
        types = {}
        for f in sorted(msg_dir.glob('*.msg')):
            types.update(get_types_from_msg(f.read_text(encoding='utf-8'), f'{OWN_PACKAGE}/msg/{f.stem}'))
        store.register(types)
    return store


class RecordingTypestore:
    """A Kilted typestore (with our own types) that learns missing types from ``.msg`` files on demand."""

    def __init__(self) -> None:
        self.store: Typestore = make_typestore()
        self._lock = threading.Lock()
        self.ensure(EPISODE_EVENT_TYPE)

    def has(self, msgtype: str) -> bool:
        return msgtype in self.store.fielddefs

    def ensure(self, msgtype: str) -> None:
        """Register ``msgtype`` (and the types it uses) unless known; raise if impossible."""
        with self._lock:
            self._ensure(msgtype, depth=0)

    def _ensure(self, msgtype: str, depth: int) -> None:
        if self.has(msgtype):
            return
        if depth > 16:
            raise UnknownMessageType(f'{msgtype}: nesting of message types too deep')
        path = find_msg_file(msgtype)
        if path is None:
            raise UnknownMessageType(
                f'no definition for message type {msgtype!r}: not in the ROS 2 Kilted '
                f'typestore and no share/<pkg>/msg/<Type>.msg in AMENT_PREFIX_PATH')
        types = get_types_from_msg(path.read_text(encoding='utf-8'), msgtype)
        # Field types defined elsewhere must be registered first.
        for fields in (t[1] for t in types.values()):
            for _, ftype in fields:
                for ref in _referenced_names(ftype):
                    if ref not in types and not self.has(ref):
                        self._ensure(ref, depth + 1)
        self.store.register(types)

    def msgdef(self, msgtype: str) -> tuple[str, str]:
        """(concatenated ros2msg definition, RIHS01 hash) of a known type."""
        self.ensure(msgtype)
        text, _ = self.store.generate_msgdef(msgtype, ros_version=2)
        return text, self.store.hash_rihs01(msgtype)

    def has_header(self, msgtype: str) -> bool:
        """True when the first field is ``std_msgs/msg/Header`` (stamp at a fixed offset)."""
        fields = self.store.fielddefs.get(msgtype, (None, []))[1]
        return bool(fields) and fields[0][0] == 'header' and fields[0][1][1] == 'std_msgs/msg/Header'

    def deserialize(self, raw: bytes | memoryview, msgtype: str) -> object:
        self.ensure(msgtype)
        return self.store.deserialize_cdr(raw, msgtype)


def header_stamp_ns(raw: bytes | memoryview) -> Optional[int]:
    """``header.stamp`` of a serialized message whose first field is a Header, in ns.

    The stamp is the first thing after the 4-byte encapsulation header (int32 sec, uint32
    nanosec), in the byte order that header names. None when the bytes are too short.
    """
    if len(raw) < 12:
        return None
    order = 'little' if raw[1] & 1 else 'big'
    sec = int.from_bytes(raw[4:8], order, signed=True)
    nsec = int.from_bytes(raw[8:12], order)
    return sec * 1_000_000_000 + nsec


def _referenced_names(ftype: object) -> list[str]:
    """Names of message types used by a rosbags field description (nested tuples)."""
    names: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, str):
            if '/msg/' in node:
                names.append(node)
        elif isinstance(node, tuple):
            for item in node:
                walk(item)

    walk(ftype)
    return names


# ----------------------------------------------------------------------------- reading: definitions

_STORES: dict = {}


def ros_store(distro: str) -> Typestore:
    """rosbags' typestore of a ROS 2 distribution (loaded once per process; not to be modified)."""
    if distro not in _STORES:
        _STORES[distro] = get_typestore(getattr(Stores, f'ROS2_{distro.upper()}'))
    return _STORES[distro]


def parse_definition(msgtype: str, encoding: str, text: str) -> dict:
    """``{type: (constants, fields)}`` of a definition a bag carries (ros2msg or ros2idl text)."""
    if encoding == 'ros2msg':
        return get_types_from_msg(text, msgtype)
    if encoding in ('ros2idl', 'omgidl'):
        return get_types_from_idl(text)
    raise ValueError(f'definition encoding {encoding!r} is not ros2msg or ros2idl')


class DecodeError(ValueError):
    """Messages of a topic that no known definition of its type decodes."""


class Message:
    """A decoded message: one attribute per field (``msg.header.stamp.sec``), constants on the class."""

    __slots__ = ()
    __msgtype__ = ''

    def __repr__(self) -> str:
        return f"{self.__msgtype__}({', '.join(f'{k}={getattr(self, k)!r}' for k in self.__slots__)})"


_PRIMITIVES = {'bool': '?', 'byte': 'b', 'char': 'B', 'int8': 'b', 'uint8': 'B', 'int16': 'h',
               'uint16': 'H', 'int32': 'i', 'uint32': 'I', 'int64': 'q', 'uint64': 'Q',
               'float32': 'f', 'float64': 'd'}


def _align(a: int) -> str:
    """Advance ``p`` to a multiple of ``a`` counted from the CDR payload (4 bytes into ``raw``)."""
    return '' if a == 1 else f'p = (p + {a - 1}) & -{a}' if a <= 4 else 'p = ((p + 3) & -8) + 4'


class _Codegen:
    """Python source of the decoder of one type (nested types inlined, sequences of them looped)."""

    def __init__(self, defs: dict, order: str):
        self.defs, self.order = defs, order
        self.env: dict = {'np': np, 'U32': struct.Struct(order + 'I').unpack_from}
        self.n = 0
        self.element_fns: dict = {}

    def var(self, stem: str = 'v') -> str:
        self.n += 1
        return f'{stem}{self.n}'

    def cls(self, name: str) -> str:
        key = 'C_' + re.sub(r'\W', '_', name)
        if key not in self.env:
            consts, fields = self.defs[name]
            bad = [f for f, _ in fields if not isinstance(f, str) or not _FIELD_RE.fullmatch(f)]
            if bad:  # a bag's definition reaches generated source only as validated identifiers
                raise DecodeError(f'{name}: field name {bad[0]!r} is not an identifier')
            names = [f + '_' if keyword.iskeyword(f) else f for f, _ in fields]
            src = f"def __init__(self, {', '.join(names)}):\n" + ''.join(f'    self.{f} = {f}\n' for f in names)
            ns: dict = {}
            exec(src, ns)  # noqa: S102 - generated from field names that are Python identifiers
            attrs = {c[0]: c[2] for c in consts if c[0] not in names}
            self.env[key] = type(name.rsplit('/', 1)[-1], (Message,),
                                 {'__slots__': tuple(names), '__init__': ns['__init__'], '__msgtype__': name, **attrs})
        return key

    def flatten(self, name: str, ops: list) -> str:
        """Append the reads of ``name``'s fields to ``ops``; return the expression that builds it."""
        if name not in self.defs:
            raise DecodeError(f'no definition of {name}, which it uses')
        parts = []
        for _, (kind, rest) in self.defs[name][1]:
            if kind == Nodetype.NAME:
                parts.append(self.flatten(rest, ops))
                continue
            v = self.var()
            if kind == Nodetype.BASE:
                if rest[0] == 'string':
                    ops.append(('str', v))
                elif rest[0] in _PRIMITIVES:
                    ops.append(('prim', v, _PRIMITIVES[rest[0]]))
                else:
                    raise DecodeError(f'field type {rest[0]} is not supported')
            else:
                ops.append(('seq' if kind == Nodetype.SEQUENCE else 'arr', v, rest[0],
                            None if kind == Nodetype.SEQUENCE else rest[1]))
            parts.append(v)
        return f"{self.cls(name)}({', '.join(parts)})"

    def body(self, name: str, lines: list, ind: str) -> str:
        ops: list = []
        expr = self.flatten(name, ops)
        i = 0
        while i < len(ops):
            op = ops[i]
            if op[0] == 'prim':  # a run of fixed fields of non-increasing size: aligned once, one unpack
                run = [op]
                while (i + len(run) < len(ops) and ops[i + len(run)][0] == 'prim'
                       and struct.calcsize(ops[i + len(run)][2]) <= struct.calcsize(run[-1][2])):
                    run.append(ops[i + len(run)])
                st = struct.Struct(self.order + ''.join(r[2] for r in run))
                key = self.var('S')
                self.env[key] = st.unpack_from
                lines += [ind + _align(struct.calcsize(run[0][2])),
                          f"{ind}{', '.join(r[1] for r in run)}, = {key}(raw, p)", f'{ind}p += {st.size}']
                i += len(run)
                continue
            if op[0] == 'str':
                self.string(op[1], lines, ind)
            else:
                self.array(op, lines, ind)
            i += 1
        return expr

    def string(self, v: str, lines: list, ind: str, append: bool = False) -> None:
        target = f'{v}.append(' if append else f'{v} = ('
        lines += [f'{ind}p = (p + 3) & -4', f'{ind}n = U32(raw, p)[0]',
                  f'{ind}if n < 1 or p + 4 + n > end or raw[p + 3 + n]: raise ValueError("bad string at byte %d" % p)',
                  f'{ind}{target}raw[p + 4:p + 3 + n].decode())', f'{ind}p += 4 + n']

    def array(self, op: tuple, lines: list, ind: str) -> None:
        kind, v, sub, length = op
        if kind == 'seq':
            lines += [f'{ind}p = (p + 3) & -4', f'{ind}k = U32(raw, p)[0]', f'{ind}p += 4',
                      f'{ind}if k > end - p: raise ValueError("bad sequence length %d at byte %d" % (k, p))']
            count = 'k'
        else:
            count = str(int(length))
        if sub[0] == Nodetype.BASE and sub[1][0] in _PRIMITIVES:
            code = _PRIMITIVES[sub[1][0]]
            size = struct.calcsize(code)
            dt = self.var('D')
            self.env[dt] = np.dtype(np.bool_ if code == '?' else self.order + code)
            if size > 1:
                lines.append(f'{ind}if {count}: {_align(size)}')
            lines += [f'{ind}{v} = np.frombuffer(raw, {dt}, {count}, p)', f'{ind}p += {count} * {size}']
            if self.order == '>' and size > 1:
                lines.append(f'{ind}{v} = {v}.astype({dt}.newbyteorder("="))')
        elif sub[0] == Nodetype.BASE and sub[1][0] == 'string':
            lines += [f'{ind}{v} = []', f'{ind}for _ in range({count}):']
            self.string(v, lines, ind + '    ', append=True)
        elif sub[0] == Nodetype.NAME:
            fn = self.element(sub[1])
            lines += [f'{ind}{v} = []', f'{ind}for _ in range({count}):', f'{ind}    o, p = {fn}(raw, p, end)',
                      f'{ind}    {v}.append(o)']
        else:
            raise DecodeError(f'field type {sub} is not supported')

    def element(self, name: str) -> str:
        """The function decoding one ``name`` at ``p`` (for sequences and arrays of messages)."""
        if name not in self.element_fns:
            key = self.element_fns[name] = self.var('F')
            lines = [f'def {key}(raw, p, end):']
            expr = self.body(name, lines, '    ')
            lines.append(f'    return {expr}, p')
            self.compile(lines)
        return self.element_fns[name]

    def compile(self, lines: list) -> None:
        exec(compile('\n'.join(x for x in lines if x.strip()), '<cdr decoder>', 'exec'), self.env)  # noqa: S102


def generate_decoder(msgtype: str, defs: dict) -> Callable[[bytes], Message]:
    """A function ``raw CDR bytes -> message`` for ``msgtype`` as ``defs`` (``{type: (consts, fields)}``)
    define it; it raises ``ValueError`` (or ``struct.error``) for bytes that do not fit."""
    def compiled(order: str) -> Callable:
        gen = _Codegen(defs, order)
        lines = ['def decode(raw, p, end):']
        expr = gen.body(msgtype, lines, '    ')
        lines += ['    if end - p > 3: raise ValueError("%d bytes left over after the message" % (end - p))',
                  f'    return {expr}']
        gen.compile(lines)
        return gen.env['decode']

    le, be = compiled('<'), []  # big-endian CDR is rare: its decoder is generated on first use

    def decode(raw):
        if raw.__class__ is not bytes:
            raw = bytes(raw)
        if raw[:2] == b'\x00\x01':
            return le(raw, 4, len(raw))
        if raw[:2] == b'\x00\x00':
            if not be:
                be.append(compiled('>'))
            return be[0](raw, 4, len(raw))
        raise ValueError(f'unsupported CDR encapsulation {raw[:4].hex()}')

    return decode


class TypeCatalog:
    """Decoders of bag topics, from the bag's own definitions first (see the module doc)."""

    def __init__(self) -> None:
        self._decoders: dict = {}
        self._parsed: dict = {}
        self._lock = threading.Lock()

    @staticmethod
    def _closure(msgtype: str, defs: dict, distro: str) -> Optional[dict]:
        """``defs`` completed with ``distro``'s definitions of the types it uses, or None."""
        out, todo = {}, [msgtype]
        while todo:
            name = todo.pop()
            if name in out:
                continue
            d = defs.get(name) or ros_store(distro).fielddefs.get(name)
            if d is None:
                return None
            out[name] = d
            todo += [r for _, desc in d[1] for r in _referenced_names(desc)]
        return out

    def candidates(self, msgtype: str, msgdef: tuple = ('', ''), distro: str = '', digest: str = ''):
        """``(source, defs)`` to try for ``msgtype``, best first; each distinct definition once."""
        seen = set()
        base = distro if distro in DISTROS else 'kilted'

        def add(source, defs, store):
            full = self._closure(msgtype, defs, store)
            if full is not None:
                key = repr(sorted((k, v[1]) for k, v in full.items()))
                if key not in seen:
                    seen.add(key)
                    yield source, full, key

        encoding, text = msgdef
        if text:
            own = self._parsed.get((msgtype, encoding, text))
            if own is None:  # parsed once per distinct text: the bags of a dataset share them
                try:
                    own = self._parsed[(msgtype, encoding, text)] = parse_definition(msgtype, encoding, text)
                except Exception as exc:  # noqa: BLE001 - rosbags' parsers raise many kinds
                    yield "the bag's definition", None, f'unparsable ({type(exc).__name__}: {exc})'
            if own is not None:
                yield from add("the bag's definition", own, base)
        order = list(DISTROS)
        if distro in DISTROS:
            order.remove(distro)
            order.insert(0, distro)
        if digest:
            for d in DISTROS:
                st = ros_store(d)
                if msgtype in st.fielddefs and st.hash_rihs01(msgtype) == digest:
                    order.remove(d)
                    order.insert(0, d)
                    break
        for d in order:
            if msgtype in ros_store(d).fielddefs:
                yield from add(f'the {d} definition', {}, d)
        path = find_msg_file(msgtype)
        if path is not None:
            try:
                yield from add(f'{path}', get_types_from_msg(path.read_text(encoding='utf-8'), msgtype), base)
            except Exception:  # noqa: BLE001 - a broken .msg file is just no candidate
                pass

    def resolve(self, msgtype: str, sample: Optional[bytes], msgdef: tuple = ('', ''), distro: str = '',
                digest: str = '') -> tuple[Callable, str, dict]:
        """``(decode, source, defs)`` of the first candidate definition that decodes ``sample``
        exactly (the first candidate when ``sample`` is None).

        Raises :class:`DecodeError` (one line: the type, what was tried, why it failed)."""
        tried = []
        for source, defs, key in self.candidates(msgtype, msgdef, distro, digest):
            if defs is None:
                tried.append(f'{source}: {key}')
                continue
            with self._lock:
                fn = self._decoders.get(key)
                if fn is None:
                    try:
                        fn = self._decoders[key] = generate_decoder(msgtype, defs)
                    except DecodeError as exc:
                        tried.append(f'{source}: {exc}')
                        continue
            try:
                if sample is not None:
                    fn(sample)
            except Exception as exc:  # noqa: BLE001 - struct.error, ValueError, IndexError, UnicodeDecodeError
                short = isinstance(exc, struct.error) or 'buffer is smaller' in str(exc)
                tried.append(f"{source}: {'the message ends before the definition does' if short else exc}")
                continue
            return fn, source, defs
        if not tried:
            raise DecodeError(f'no definition of {msgtype}: the bag carries none and neither the ROS 2 stores '
                              f"({', '.join(DISTROS)}) nor a .msg file in AMENT_PREFIX_PATH know it")
        raise DecodeError(f"messages do not decode as {msgtype} ({'; '.join(tried)})")

    def decoder(self, msgtype: str, sample: bytes, msgdef: tuple = ('', ''), distro: str = '',
                digest: str = '') -> tuple[Callable, str]:
        """``(decode, source)`` (see :meth:`resolve`)."""
        return self.resolve(msgtype, sample, msgdef, distro, digest)[:2]


def msgdef_text(msgtype: str, defs: dict) -> tuple[str, str]:
    """(concatenated ros2msg definition, RIHS01 hash) of ``msgtype`` as ``defs`` define it (for writers)."""
    store = get_typestore(Stores.EMPTY)
    store.register(defs)
    text, _ = store.generate_msgdef(msgtype, ros_version=2)
    return text, store.hash_rihs01(msgtype)


CATALOG = TypeCatalog()
