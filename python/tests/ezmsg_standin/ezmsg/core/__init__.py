"""Stand-in for ezmsg.core (tests only; see ../../README.md). Not ezmsg: the classes and
decorators a Unit is written with, and the lifecycle ezmsg's backend drives (settings
applied at construction, ``setup()`` instantiates the state and awaits ``initialize()``,
subscribers called with each message, ``shutdown()`` at the end). No graph, no
transport."""
import abc
import copy
import dataclasses
import inspect
import typing

TASK_ATTR = "__ez_task__"
PUBLISHES_ATTR = "__ez_publishes__"
SUBSCRIBES_ATTR = "__ez_subscribes__"
ZERO_COPY_ATTR = "__ez_zerocopy__"
MAIN_ATTR = "__ez_main__"
THREAD_ATTR = "__ez_thread__"


class NormalTermination(Exception):
    """Raised by a task to end the unit normally."""


class Complete(Exception):
    """Raised by a task whose work is complete."""


class _SettingsMeta(abc.ABCMeta):
    def __new__(mcs, name, bases, ns, **kw):
        return dataclasses.dataclass(frozen=True)(super().__new__(mcs, name, bases, ns))


class Settings(abc.ABC, metaclass=_SettingsMeta):
    """Settings are frozen dataclasses."""


class _StateMeta(abc.ABCMeta):
    def __new__(mcs, name, bases, ns, **kw):
        cls = super().__new__(mcs, name, bases, ns)
        return dataclasses.dataclass(unsafe_hash=True, frozen=False, init=False)(cls)


class State(abc.ABC, metaclass=_StateMeta):
    """States are mutable dataclasses without __init__, made in the unit's process."""


class Stream:
    def __init__(self, msg_type: typing.Any):
        self.msg_type = msg_type
        self.name: typing.Optional[str] = None

    def _set_name(self, name: str) -> None:
        self.name = name


class InputStream(Stream):
    def __repr__(self) -> str:
        return f"InputStream:{self.name}[{self.msg_type}]()"


class OutputStream(Stream):
    def __init__(self, msg_type: typing.Any, host=None, port=None, num_buffers: int = 32,
                 buf_size: int = 2 ** 16, force_tcp: bool = False):
        super().__init__(msg_type)


def task(func):
    setattr(func, TASK_ATTR, True)
    return func


def subscriber(stream: InputStream, zero_copy: bool = False):
    if not isinstance(stream, InputStream):
        raise ValueError(f"Cannot subscribe to object of type {type(stream)}")

    def sub_factory(func):
        if getattr(func, SUBSCRIBES_ATTR, None) is not None:
            raise Exception(f"{func} cannot subscribe to more than one stream")
        setattr(func, SUBSCRIBES_ATTR, stream)
        setattr(func, ZERO_COPY_ATTR, zero_copy)
        return task(func)

    return sub_factory


def publisher(stream: OutputStream):
    if not isinstance(stream, OutputStream):
        raise ValueError(f"Cannot publish to object of type {type(stream)}")

    def pub_factory(func):
        setattr(func, PUBLISHES_ATTR, getattr(func, PUBLISHES_ATTR, []) + [stream])
        return task(func)

    return pub_factory


def main(func):
    setattr(func, MAIN_ATTR, True)
    return func


def thread(func):
    setattr(func, THREAD_ATTR, True)
    return func


class _UnitMeta(abc.ABCMeta):
    def __init__(cls, name, bases, fields, **kw):
        super().__init__(name, bases, fields)
        cls.__streams__, cls.__tasks__ = {}, {}
        for base in bases:
            cls.__streams__.update(getattr(base, "__streams__", {}))
            cls.__tasks__.update(getattr(base, "__tasks__", {}))
        for fname, value in fields.items():
            if isinstance(value, Stream):
                value._set_name(fname)
                cls.__streams__[fname] = value
            elif callable(value) and hasattr(value, TASK_ATTR):
                cls.__tasks__[fname] = value
            if fname == "SETTINGS":
                if not issubclass(value, Settings):
                    raise TypeError(f"{name}.SETTINGS must be a subclass of ez.Settings")
                cls.__settings_type__ = value
            if fname == "STATE":
                if not issubclass(value, State):
                    raise TypeError(f"{name}.STATE must be a subclass of ez.State")
                cls.__state_type__ = value


class Component(metaclass=_UnitMeta):
    def __init__(self, *args, settings: typing.Optional[Settings] = None, **kwargs):
        self.SETTINGS = None
        self.STATE = None
        self._settings_applied = False
        self._streams = copy.deepcopy(self.__class__.__streams__)
        for sname, stream in self._streams.items():
            setattr(self, sname, stream)
        if settings is None:
            stype = getattr(self.__class__, "__settings_type__", Settings)
            if args and isinstance(args[0], stype):
                settings = args[0]
            elif args or kwargs:
                settings = stype(*args, **kwargs)
        if settings is not None:
            self.apply_settings(settings)

    def apply_settings(self, settings: Settings) -> None:
        self.SETTINGS = settings
        self._settings_applied = True

    def _instantiate_state(self) -> None:
        assert self.STATE is None
        self.STATE = self.__class__.__state_type__()
        for f in dataclasses.fields(self.STATE):
            if f.default_factory is not dataclasses.MISSING and f.default is dataclasses.MISSING:
                setattr(self.STATE, f.name, f.default_factory())

    @property
    def streams(self):
        return self._streams

    @property
    def tasks(self):
        return dict(self.__class__.__tasks__)


class Unit(Component):
    async def setup(self) -> None:
        self._instantiate_state()
        if not self._settings_applied:
            raise ValueError(f"{self} has not had settings applied before initialization")
        if inspect.iscoroutinefunction(self.initialize):
            await self.initialize()
        else:
            self.initialize()
        for f in dataclasses.fields(self.STATE.__class__):
            if not hasattr(self.STATE, f.name):
                raise AttributeError(f"STATE.{f.name} was not initialized!")

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass
