"""Interface description: loading, validation messages, fingerprint, round trip."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from robot_training.interface.description import (
    InterfaceError,
    interface_from_dict,
    load_interface,
)

CONFIG = Path(__file__).resolve().parents[1] / "config"


def _pendulum_dict():
    return yaml.safe_load((CONFIG / "interface_inverted_pendulum.yaml").read_text())


def _write(tmp_path, data, name="iface.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize("name", ["interface_example.yaml", "interface_inverted_pendulum.yaml"])
def test_shipped_descriptions_load(name):
    desc = load_interface(CONFIG / name)
    assert len(desc.fingerprint) == 64
    topics = [s.topic for s in desc.streams()]
    assert len(topics) == len(set(topics))
    for topic, msgtype in desc.streams():
        assert topic.startswith("/") and msgtype.count("/msg/") == 1
    assert desc.topics() == desc.streams()


def test_pendulum_shapes_and_streams():
    desc = load_interface(CONFIG / "interface_inverted_pendulum.yaml")
    assert desc.control_rate_hz == 25.0
    assert desc.observation_layout == "flat"
    assert desc.observation_shape == (4,)
    assert desc.action_dim == 1
    assert desc.observation_slices["joints"] == slice(0, 4)
    assert dict(desc.streams())["/episode_event"] == "robot_training_msgs/msg/EpisodeEvent"
    np.testing.assert_array_equal(desc.action.low, [-3.0])


def test_example_uses_dict_layout_with_images():
    desc = load_interface(CONFIG / "interface_example.yaml")
    assert desc.observation_layout == "dict"
    assert desc.observation_shape["camera"] == (64, 64, 3)
    assert desc.observation_shape["scan"] == (36,)
    assert desc.observation_shape["arm"] == (6,)


def test_fingerprint_is_stable_and_sensitive(tmp_path):
    data = _pendulum_dict()
    a = load_interface(_write(tmp_path, data, "a.yaml"))
    # same content, other key order, other free text: same fingerprint
    reordered = dict(reversed(list(data.items())))
    reordered["description"] = "other words"
    b = load_interface(_write(tmp_path, reordered, "b.yaml"))
    assert a.fingerprint == b.fingerprint
    # defaults written out explicitly: same fingerprint
    c = interface_from_dict(a.to_dict())
    assert c.fingerprint == a.fingerprint
    data["action"]["high"] = [2.0]
    assert load_interface(_write(tmp_path, data, "d.yaml")).fingerprint != a.fingerprint


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d.pop("control_rate_hz"), "missing required key 'control_rate_hz'"),
        (lambda d: d.update(control_rate_hz="fast"), "control_rate_hz: expected float"),
        (lambda d: d.update(control_rate_hz=-1), "control_rate_hz: must be > 0"),
        (lambda d: d.update(colour="red"), "unknown key 'colour'"),
        (lambda d: d["observations"][0].update(joint_names=[]), "observations[0].joint_names: must not be empty"),
        (lambda d: d["observations"][0].update(fields=["torque"]), "observations[0].fields[0]: 'torque' is not one of"),
        (lambda d: d["observations"][0].update(topic="joint_states"), "observations[0].topic: expected an absolute"),
        (lambda d: d["observations"][0].update(type="JointState"), "observations[0].type: expected a ROS type name"),
        (lambda d: d["observations"][0].update(extra=1), "observations[0]: unknown key 'extra'"),
        (lambda d: d["action"].update(low=[-1.0, -1.0]), "action.low: 2 values for an action of size 1"),
        (lambda d: d["action"].update(low=[5.0]), "action: low[0]=5.0 is above high[0]=3.0"),
        (lambda d: d["action"].update(type="sensor_msgs/msg/Image", height=2, width=2, size=None),
         "action.type: sensor_msgs/msg/Image cannot carry actions"),
        (lambda d: d.update(reward={"function": "os.system"}), "reward.function: unknown reward function 'os.system'"),
        (lambda d: d.update(reward={"function": "pole_upright", "params": {"bogus": 1}}), "reward.params:"),
        (lambda d: d["reward"].update(type="std_msgs/msg/String"), "reward.type: 'std_msgs/msg/String' is not one of"),
        (lambda d: d.update(observations=[]), "observations: must list at least one stream"),
    ],
)
def test_validation_errors_name_file_and_key(tmp_path, mutate, expected):
    data = _pendulum_dict()
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(InterfaceError) as info:
        load_interface(path)
    message = str(info.value)
    assert str(path) in message
    assert expected in message


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(InterfaceError, match="not found"):
        load_interface(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("observations: [unclosed\n")
    with pytest.raises(InterfaceError, match="not valid YAML"):
        load_interface(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(InterfaceError, match="top level must be a mapping"):
        load_interface(lst)


def test_reward_function_and_bag_episodes_defaults(tmp_path):
    data = _pendulum_dict()
    data["reward"] = {"function": "pole_upright", "params": {"stream": "joints", "index": 1}}
    data.pop("episodes")
    desc = load_interface(_write(tmp_path, data))
    assert desc.reward.source == "function"
    assert desc.episodes.source == "bag"
    assert [s.topic for s in desc.streams()] == ["/joint_states", "/cmd"]
    nxt = {"joints": np.array([[0.0, 0.1, 0, 0], [0.0, 0.5, 0, 0]], dtype=np.float32)}
    r = desc.reward.compute(nxt, np.zeros((2, 1)), nxt)
    np.testing.assert_array_equal(r, [1.0, 0.0])
