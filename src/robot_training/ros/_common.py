"""rclpy helpers shared by the recorder node and ROSDataCollector.

``TopicRecorder`` finds the topics to record on the graph, subscribes to each with
``raw=True`` and a QoS that matches its publishers, and hands the serialized bytes to a
:class:`robot_training.recording.DatasetRecorder` (no deserialization).
Message classes are resolved only for interface packages registered in the ament index
(``rosidl_interfaces``) and for well-formed ``pkg/msg/Type`` names.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable, Iterable, Optional

from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

from robot_training.recording import DatasetRecorder, RecordingError, UnknownMessageType
from robot_training.recording.typestore import header_stamp_ns, valid_msgtype
from robot_training.utils.files import ament_prefixes

# Topics of the ROS machinery itself, never recorded by "all topics".
DEFAULT_EXCLUDES = ('/rosout', '/parameter_events')
SUBSCRIPTION_DEPTH = 100


def _interface_packages() -> dict[str, Path]:
    """Interface packages of the ament index: name -> resource file."""
    found: dict[str, Path] = {}
    for prefix in ament_prefixes():
        index = prefix / 'share' / 'ament_index' / 'resource_index' / 'rosidl_interfaces'
        if index.is_dir():
            for entry in index.iterdir():
                found.setdefault(entry.name, entry)
    return found


_PACKAGES: Optional[dict[str, Path]] = None


def message_class(msgtype: str):
    """The rclpy message class of ``pkg/msg/Type``, for installed interface packages only."""
    global _PACKAGES
    if not valid_msgtype(msgtype):
        raise UnknownMessageType(f'refusing message type name {msgtype!r} (expected pkg/msg/Type)')
    pkg, _, name = msgtype.split('/')
    if _PACKAGES is None or pkg not in _PACKAGES:
        _PACKAGES = _interface_packages()
    resource = _PACKAGES.get(pkg)
    if resource is None:
        raise UnknownMessageType(f'{pkg!r} is not an interface package in the ament index')
    listed = resource.read_text(encoding='utf-8').split()
    if not any(entry.split(';')[0] in (f'msg/{name}.idl', f'msg/{name}.msg') for entry in listed):
        raise UnknownMessageType(f'{msgtype!r} is not listed by package {pkg!r}')
    module = importlib.import_module(f'{pkg}.msg')
    return getattr(module, name)


def subscribe_observations(node: Node, interface, on_message: Callable[[str, object], None]) -> None:
    """One subscription per topic the observation streams of ``interface`` read: a stream's
    own topic with sensor-data QoS (which takes reliable and best-effort publishers alike), its
    extra topics (``/tf_static`` of a pose from ``/tf``) reliable and transient-local, so that
    latched transforms published before the node started arrive; ``on_message(topic, msg)``
    gets each message. A message type this installation lacks (``tf2_msgs`` has no pip wheel)
    is a ValueError naming the stream."""
    from rclpy.qos import qos_profile_sensor_data

    latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=SUBSCRIPTION_DEPTH,
                         reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    seen = set()
    for s in interface.observations:
        wanted = [(s.topic, s.msgtype, qos_profile_sensor_data)] + [(t, m, latched) for t, m in s.converter.extra_topics]
        for topic, msgtype, qos in wanted:
            if topic in seen:
                continue
            seen.add(topic)
            try:
                cls = message_class(msgtype)
            except (UnknownMessageType, ImportError) as exc:
                raise ValueError(f"observation stream '{s.name}' reads {topic} as {msgtype}, which this ROS "
                                 f"installation lacks ({exc}); bags of it still load (rosbags knows the type)") from None
            node.create_subscription(cls, topic, lambda msg, topic=topic: on_message(topic, msg), qos)


def matching_qos(endpoints: Iterable) -> QoSProfile:
    """A subscription QoS compatible with every publisher: best effort if any publisher is,
    transient-local only if all are."""
    endpoints = list(endpoints)
    reliable = bool(endpoints) and all(
        e.qos_profile.reliability == ReliabilityPolicy.RELIABLE for e in endpoints)
    latched = bool(endpoints) and all(
        e.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for e in endpoints)
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=SUBSCRIPTION_DEPTH,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


def offered_qos(endpoints: Iterable) -> list:
    """Publisher QoS profiles as rosbags ``Qos`` (kept in the bag's topic metadata)."""
    from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness,
                                    QosReliability, QosTime)

    def t(duration) -> QosTime:
        ns = int(duration.nanoseconds)
        return QosTime(ns // 1_000_000_000, ns % 1_000_000_000)

    out = []
    for e in endpoints:
        q = e.qos_profile
        try:
            out.append(Qos(QosHistory(int(q.history)), int(q.depth),
                           QosReliability(int(q.reliability)), QosDurability(int(q.durability)),
                           t(q.deadline), t(q.lifespan), QosLiveliness(int(q.liveliness)),
                           t(q.liveliness_lease_duration), bool(q.avoid_ros_namespace_conventions)))
        except (ValueError, AttributeError):
            continue
    return out


class TopicRecorder:
    """Discovers topics and feeds their raw messages to a DatasetRecorder.

    ``wanted`` maps topic -> expected type ('' when any type is fine); ``all_topics`` adds
    every topic on the graph except ``exclude``. Call :meth:`discover` periodically.
    A wanted topic is looked for on the graph under the name it resolves to (the node's
    namespace and remappings: a fleet's ``/robot1/joint_states``) and recorded under its own
    name (``/joint_states``, the interface's), so every robot's bags match one interface.
    """

    def __init__(self, node: Node, recorder: DatasetRecorder, *, wanted: dict[str, str],
                 all_topics: bool = False, exclude: Iterable[str] = (),
                 on_error: Optional[Callable[[str], None]] = None) -> None:
        self.node = node
        self.recorder = recorder
        self.wanted = dict(wanted)
        self._recorded_as = {node.resolve_topic_name(t): t for t in self.wanted}
        """graph name -> the name it is recorded under (the same unless remapped)"""
        self._graph_name = {t: g for g, t in self._recorded_as.items()}
        self.all_topics = all_topics
        self.exclude = set(DEFAULT_EXCLUDES) | set(exclude)
        self.subscriptions: dict[str, object] = {}
        self.types: dict[str, str] = {}
        self._classes: dict[str, type] = {}
        self._qos: dict[str, QoSProfile] = {}
        self.refused: dict[str, str] = {}
        self.on_error = on_error
        self._clock = node.get_clock()
        self.reception_clock = None  # on wall time a message's reception time is the node's time
        if node.get_parameter('use_sim_time').value:
            self._follow_clock()

    def _follow_clock(self) -> None:
        """On simulation time: a /clock subscription of our own, created before any topic's, that
        records when each clock message arrived (robot_training.recording.reception_clock)."""
        from rosgraph_msgs.msg import Clock

        from robot_training.recording.reception_clock import ReceptionClock

        self.reception_clock = ReceptionClock()

        def on_clock(msg, info) -> None:
            received = info.get('received_timestamp') if isinstance(info, dict) else None
            if received:
                self.reception_clock.on_clock(received, msg.clock.sec * 1_000_000_000 + msg.clock.nanosec)

        # best effort matches every publisher (a reliable simulator, a best-effort bridge)
        self._clock_sub = self.node.create_subscription(
            Clock, '/clock', on_clock, QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT))

    def discover(self) -> list[str]:
        """Subscribe to wanted topics that have appeared; returns the new ones."""
        new = []
        for graph_name, types in self.node.get_topic_names_and_types():
            topic = self._recorded_as.get(graph_name, graph_name)
            if topic in self.subscriptions:
                self._requalify(topic)
                continue
            if topic in self.refused:
                continue
            if graph_name in self.exclude or topic in self.exclude or topic.startswith('/_') or '/_action/' in topic:
                continue
            expected = self.wanted.get(topic)
            if expected is None and not self.all_topics:
                continue
            if expected:
                if expected not in types:
                    self._refuse(topic, f'type on the graph {types} is not the expected {expected}')
                    continue
                msgtype = expected
            else:
                if len(types) != 1:
                    self._refuse(topic, f'several types on the graph: {types}')
                    continue
                msgtype = types[0]
            publishers = [e for e in self.node.get_publishers_info_by_topic(graph_name)
                          if e.topic_type == msgtype]
            if not publishers:
                continue  # only a subscriber so far: match QoS once a publisher exists
            try:
                cls = message_class(msgtype)
                self.recorder.add_topic(topic, msgtype, offered_qos(publishers))
            except (UnknownMessageType, ImportError, AttributeError) as err:
                self._refuse(topic, str(err))
                continue
            self.types[topic] = msgtype
            self._classes[topic] = cls
            qos = matching_qos(publishers)
            self._qos[topic] = qos
            self.subscriptions[topic] = self.node.create_subscription(
                cls, topic, self._callback(topic, msgtype), qos, raw=True)
            self.node.get_logger().info(
                f'recording {topic} [{msgtype}] reliability={qos.reliability.name.lower()} '
                f'durability={qos.durability.name.lower()}')
            new.append(topic)
        return new

    def _requalify(self, topic: str) -> None:
        """Resubscribe when a new publisher needs a weaker QoS (best effort / volatile)."""
        msgtype = self.types[topic]
        publishers = [e for e in self.node.get_publishers_info_by_topic(self._graph_name.get(topic, topic))
                      if e.topic_type == msgtype]
        if not publishers:
            return
        need, have = matching_qos(publishers), self._qos[topic]
        if need.reliability == have.reliability and need.durability == have.durability:
            return
        incompatible = (
            (have.reliability == ReliabilityPolicy.RELIABLE
             and need.reliability == ReliabilityPolicy.BEST_EFFORT)
            or (have.durability == DurabilityPolicy.TRANSIENT_LOCAL
                and need.durability == DurabilityPolicy.VOLATILE))
        if not incompatible:
            return  # the current subscription still matches every publisher
        self.node.destroy_subscription(self.subscriptions.pop(topic))
        self._qos[topic] = need
        self.subscriptions[topic] = self.node.create_subscription(
            self._classes[topic], topic, self._callback(topic, msgtype), need, raw=True)
        self.node.get_logger().info(
            f'resubscribed {topic}: reliability={need.reliability.name.lower()} '
            f'durability={need.durability.name.lower()} (a new publisher needs it)')

    def _refuse(self, topic: str, why: str) -> None:
        self.refused[topic] = why
        self.node.get_logger().warning(f'not recording {topic}: {why}')

    def use_recorder(self, recorder: DatasetRecorder) -> None:
        """Send messages to another recorder from now on (topics found so far carry over)."""
        for topic, msgtype in self.types.items():
            recorder.add_topic(topic, msgtype)
        self.recorder = recorder

    def _callback(self, topic: str, msgtype: str):
        clock = self._clock
        stamped = self.recorder.typestore.has_header(msgtype)

        reception = self.reception_clock

        def on_message(raw: bytes, info) -> None:
            # the time the message arrived (not when the executor got to it): see reception_clock
            received = info.get('received_timestamp') if isinstance(info, dict) else None
            now = None
            if received:
                now = received if reception is None else reception.at(received)
            if now is None:
                now = clock.now().nanoseconds
            if stamped:
                stamp = header_stamp_ns(raw)
            else:
                stamp = info.get('source_timestamp') if isinstance(info, dict) else None
            try:
                self.recorder.write(topic, msgtype, raw, now, stamp)
            except RecordingError as err:
                if self.on_error is not None:
                    self.on_error(str(err))

        return on_message

    def destroy(self) -> None:
        for sub in self.subscriptions.values():
            self.node.destroy_subscription(sub)
        self.subscriptions.clear()


#: the range of a numeric parameter whose table entry gives none: a count, period or limit
NON_NEGATIVE = (0, None)
#: a table entry's range for a parameter any number suits (a seed, a return threshold)
ANY_NUMBER = None


def declare_parameters(node: Node, table: dict) -> dict:
    """Declare ``{name: (default, description[, (low, high)])}`` on ``node`` and return their values.

    Every parameter carries its description and, when numeric, its range (``ros2 param
    describe`` shows both; ``high`` None: no upper limit; a range of None: any number; no range
    given: non-negative). Every parameter is read-only: the nodes read their parameters once,
    at start, so a runtime ``ros2 param set`` is refused instead of being accepted and silently
    ignored. A value outside its range raises ``ValueError`` naming the parameter and the range
    (one line from ``run_node``)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
    from rclpy.exceptions import InvalidParameterValueException

    for name, entry in table.items():
        default, text = entry[0], entry[1]
        bounds = entry[2] if len(entry) > 2 else NON_NEGATIVE
        descriptor = ParameterDescriptor(description=text, read_only=True)
        numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
        if numeric and bounds is not None:
            low, high = bounds
            if isinstance(default, int):
                descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(2**63 - 1 if high is None
                                                                                          else high), step=0)]
            else:
                descriptor.floating_point_range = [FloatingPointRange(
                    from_value=float(low), to_value=float(1.7976931348623157e308 if high is None else high),
                    step=0.0)]
        try:
            node.declare_parameter(name, default, descriptor)
        except InvalidParameterValueException:
            given = getattr(node, '_parameter_overrides', {}).get(name)
            value = given.value if given is not None else default
            limit = f'at least {low}' if high is None else f'from {low} to {high}'
            raise ValueError(f'parameter {name}: {value!r} is out of range (must be {limit}: {text})') from None
    return {name: node.get_parameter(name).value for name in table}


def _first_sigint_only(stop) -> None:
    """SIGINT asks ``run_node``'s spin loop to stop (``stop.set()``); every later SIGINT is
    ignored by the operating system.

    ros2 launch forwards Ctrl-C to its children while a terminal's Ctrl-C reaches the whole
    process group, and impatient operators press it again: a node that is finishing a bag or a
    checkpoint gets two or three SIGINTs within milliseconds. rclpy's own handler raises
    KeyboardInterrupt wherever the interpreter happens to be, which can be in the middle of
    finishing an episode's bag, and lets a later SIGINT interrupt the cleanup. This handler
    raises nothing: the loop ends between two callbacks."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def on_sigint(_signum, _frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stop.set()

    from robot_training.ros import EARLY_STOP

    if EARLY_STOP.is_set():  # run_node ends the node before it starts
        stop.set()
        return
    signal.signal(signal.SIGINT, on_sigint)


def _ignore_sigint() -> None:
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


#: ``realtime_priority`` of the robot's nodes (sim, policy_server, recorder)
REALTIME_PRIORITY = (0, 'run every thread of this node under Linux SCHED_FIFO at this priority (1-99; the loop: '
                        '10; needs root, CAP_SYS_NICE or an rtprio limit, else one warning and normal priority; '
                        '0: normal priority)', (0, 99))


def apply_realtime_priority(node: Node, priority: int) -> bool:
    """``realtime_priority`` for ``node``'s process: one log line either way; True when in effect."""
    if int(priority) == 0:
        return False
    from robot_training.utils.priority import set_process_realtime

    why = set_process_realtime(priority)
    if why:
        node.get_logger().warning(f'realtime_priority {priority} not applied, normal priority kept: {why}')
        return False
    node.get_logger().info(f'running under SCHED_FIFO priority {priority}')
    return True


def run_node(program: str, make_node: Callable[[], Node],
             user_errors: tuple = (ValueError, OSError),
             cleanup: Optional[Callable[[Node, str], None]] = None, args=None) -> None:
    """The ``main`` of every node: init, build, spin until Ctrl-C or an external shutdown
    (SIGTERM), clean up, shut down.

    A ``user_errors`` exception (bad parameter, file, checkpoint) prints one line naming the
    program and exits with status 2. ``cleanup(node, cause)`` runs before the node is
    destroyed, with ``cause`` ``'sigint'``, ``'signal'`` or ``'shutdown'``. A node that raises
    ``SystemExit`` (done with its work) exits with that code.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException

    import threading

    from rclpy.executors import SingleThreadedExecutor

    from robot_training.ros import EARLY_STOP

    rclpy.init(args=args)
    stop = threading.Event()
    _first_sigint_only(stop)
    node = None
    cause, code = 'shutdown', 0
    if EARLY_STOP.is_set():  # Ctrl-C while the program was still importing: nothing started, nothing to save
        _ignore_sigint()
        print(f'[{program}] stopped by SIGINT before it started', flush=True)
        rclpy.try_shutdown()
        return
    try:
        node = make_node()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok() and not stop.is_set():
            # a bounded wait: the loop sees a SIGINT within 0.2 s even when the node's own
            # timers run on a simulation clock that has stopped
            executor.spin_once(timeout_sec=0.2)
        if stop.is_set():
            cause = 'sigint'
    except SystemExit as done:
        code = done.code or 0
    except KeyboardInterrupt:
        cause = 'sigint'
    except ExternalShutdownException:
        cause = 'signal'
    except user_errors as err:
        print(f'{program}: {err}', flush=True)
        code = 2
    except Exception:
        # A signal that shuts the context down while the executor builds its wait set
        # surfaces as an RCLError ("context is not valid"): a normal shutdown.
        if rclpy.ok():
            raise
        cause = 'signal'
    else:
        if not rclpy.ok():
            cause = 'signal'
    finally:
        # ros2 launch forwards SIGINT and a terminal's Ctrl-C signals the whole group: a second
        # SIGINT must not interrupt the cleanup that saves what the node holds.
        _ignore_sigint()
        if node is not None:
            if cleanup is not None:
                cleanup(node, cause)
            node.destroy_node()
        rclpy.try_shutdown()
    if code:
        raise SystemExit(code)
