"""Recorder benchmark: a separate publisher process against the recorder node.

    source scripts/env.sh
    python bench/bench_recorder.py --seconds 60                  # both QoS, Fast DDS profile on
    python bench/bench_recorder.py --seconds 10 --profile both   # with and without the profile

The publisher sends 640x480 rgb8 images at 30 Hz (/camera/image_raw) plus two 100 Hz
small-message topics (/imu, /joint_states), once with reliable QoS and once with sensor
data QoS (best effort). The recorder matches the publishers' QoS. For each run the table
gives messages sent vs recorded per topic, recorded MB/s and the recorder's CPU use (user +
system time of its process over the publishing window, in % of one core).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / 'config' / 'fastdds_large_data.xml'
TOPICS = {  # topic: (type, rate Hz)
    '/camera/image_raw': ('sensor_msgs/msg/Image', 30.0),
    '/imu': ('sensor_msgs/msg/Imu', 100.0),
    '/joint_states': ('sensor_msgs/msg/JointState', 100.0),
}


def publisher(qos_name: str, seconds: float) -> None:
    """Publisher process: waits for the recorder, publishes, prints sent counts as JSON."""
    import array

    import rclpy
    from rclpy.qos import QoSProfile, qos_profile_sensor_data
    from sensor_msgs.msg import Image, Imu, JointState

    rclpy.init()
    node = rclpy.create_node('bench_publisher')
    qos = qos_profile_sensor_data if qos_name == 'sensor' else QoSProfile(depth=10)
    pubs = {
        '/camera/image_raw': node.create_publisher(Image, '/camera/image_raw', qos),
        '/imu': node.create_publisher(Imu, '/imu', qos),
        '/joint_states': node.create_publisher(JointState, '/joint_states', qos),
    }
    deadline = time.monotonic() + 30
    while any(p.get_subscription_count() == 0 for p in pubs.values()):
        if time.monotonic() > deadline:
            sys.exit('bench publisher: the recorder did not subscribe within 30 s')
        time.sleep(0.05)
    time.sleep(1.0)
    w, h = 640, 480
    size = w * h * 3  # every frame fresh noise: as hard to compress as it gets
    img = Image(height=h, width=w, encoding='rgb8', is_bigendian=0, step=w * 3)
    img.header.frame_id = 'camera'
    imu = Imu()
    imu.header.frame_id = 'imu'
    js = JointState(name=[f'j{i}' for i in range(7)])
    sent = {t: 0 for t in TOPICS}
    start = time.monotonic()
    due = {t: start for t in TOPICS}
    print('publishing', flush=True)
    while True:
        now = time.monotonic()
        if now - start >= seconds:
            break
        topic = min(due, key=due.get)
        if due[topic] > now:
            time.sleep(due[topic] - now)
        stamp = node.get_clock().now().to_msg()
        n = sent[topic]
        if topic == '/camera/image_raw':
            img.header.stamp = stamp
            img.data = array.array('B', os.urandom(size))
            pubs[topic].publish(img)
        elif topic == '/imu':
            imu.header.stamp = stamp
            imu.angular_velocity.z = float(n)
            pubs[topic].publish(imu)
        else:
            js.header.stamp = stamp
            js.position = [float(n)] * 7
            js.velocity = [0.1] * 7
            pubs[topic].publish(js)
        sent[topic] += 1
        due[topic] += 1.0 / TOPICS[topic][1]
    elapsed = time.monotonic() - start
    time.sleep(1.0)  # let the last messages arrive
    print('RESULT ' + json.dumps({'sent': sent, 'elapsed': elapsed}), flush=True)
    node.destroy_node()
    rclpy.shutdown()


def cpu_seconds(pid: int) -> float:
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def run_once(qos_name: str, seconds: float, use_profile: bool, domain: int, work: Path,
             compression: str) -> dict:
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    env.pop('FASTDDS_DEFAULT_PROFILES_FILE', None)
    if use_profile:
        env['FASTDDS_DEFAULT_PROFILES_FILE'] = str(PROFILE)
    dataset = work / f'{qos_name}_{"profile" if use_profile else "default"}'
    topics = '[' + ','.join(f"'{t}'" for t in TOPICS) + ']'
    rec = subprocess.Popen(
        [sys.executable, '-m', 'robot_training.ros.recorder_node', '--ros-args',
         '-p', f'dataset_dir:={dataset}', '-p', f'topics:={topics}',
         '-p', "episode_event_topic:=''", '-p', f'compression:={compression}',
         '-p', 'discovery_period_s:=0.2', '-p', 'log_period_s:=0.0'],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pub = subprocess.Popen([sys.executable, __file__, '--publisher', qos_name,
                            '--seconds', str(seconds)],
                           env=env, stdout=subprocess.PIPE, text=True)
    try:
        cpu0 = t0 = None
        result = None
        for line in pub.stdout:
            if line.startswith('publishing'):
                cpu0, t0 = cpu_seconds(rec.pid), time.monotonic()
            elif line.startswith('RESULT '):
                result = json.loads(line[7:])
        pub.wait(timeout=30)
        if result is None or cpu0 is None:
            raise RuntimeError(f'publisher failed (exit {pub.returncode})')
        cpu = (cpu_seconds(rec.pid) - cpu0) / (time.monotonic() - t0)
        rec.send_signal(signal.SIGINT)
        rec_out, _ = rec.communicate(timeout=60)
        if rec.returncode != 0:
            raise RuntimeError(f'recorder exited {rec.returncode}:\n{rec_out[-3000:]}')
    finally:
        for p in (pub, rec):
            if p.poll() is None:
                p.kill()
                p.wait()
    from rosbags.rosbag2 import Reader

    from robot_training.recording import list_episode_dirs
    recorded = {t: 0 for t in TOPICS}
    nbytes = msg_bytes = 0
    for bag in list_episode_dirs(dataset):
        with Reader(bag) as reader:
            for conn in reader.connections:
                recorded[conn.topic] = recorded.get(conn.topic, 0) + conn.msgcount
            msg_bytes += sum(len(raw) for _, _, raw in reader.messages())
        nbytes += sum(f.stat().st_size for f in bag.glob('*.mcap'))
    return {'qos': qos_name, 'profile': use_profile, 'sent': result['sent'],
            'recorded': recorded, 'elapsed': result['elapsed'], 'cpu': cpu,
            'mb_s': msg_bytes / 1e6 / result['elapsed'],
            'file_mb_s': nbytes / 1e6 / result['elapsed']}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--seconds', type=float, default=60.0)
    ap.add_argument('--qos', choices=['reliable', 'sensor', 'both'], default='both')
    ap.add_argument('--profile', choices=['on', 'off', 'both'], default='on',
                    help='use config/fastdds_large_data.xml in both processes')
    ap.add_argument('--compression', choices=['zstd', 'none'], default='zstd')
    ap.add_argument('--keep', action='store_true', help='keep the recorded bags')
    ap.add_argument('--publisher', choices=['reliable', 'sensor'], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.publisher:
        publisher(args.publisher, args.seconds)
        return 0
    qos_list = ['reliable', 'sensor'] if args.qos == 'both' else [args.qos]
    profiles = {'on': [True], 'off': [False], 'both': [True, False]}[args.profile]
    work = Path(tempfile.mkdtemp(prefix='bench_recorder_'))
    domain = random.randint(101, 200)
    rows = []
    ok = True
    for use_profile in profiles:
        for qos_name in qos_list:
            r = run_once(qos_name, args.seconds, use_profile, domain, work, args.compression)
            rows.append(r)
    print(f'\n{args.seconds:.0f} s per run, 640x480 rgb8 @30 Hz + /imu, /joint_states @100 Hz, '
          f'compression {args.compression}; recorder CPU in % of one core ({os.cpu_count()} cores)')
    print('| QoS | Fast DDS profile | topic | sent | recorded | % '
          '| MB/s recorded (messages / file) | recorder CPU |')
    print('|---|---|---|---:|---:|---:|---:|---:|')
    for r in rows:
        for i, t in enumerate(TOPICS):
            s, n = r['sent'][t], r['recorded'].get(t, 0)
            pct = 100.0 * n / s if s else 0.0
            if r['profile']:
                ok &= pct >= 99.9
            extra = (f"{r['mb_s']:.1f} / {r['file_mb_s']:.1f} | {100 * r['cpu']:.0f} %"
                     if i == 0 else ' | ')
            print(f"| {r['qos']} | {'on' if r['profile'] else 'off'} | {t} | {s} | {n} | "
                  f'{pct:.2f} | {extra} |')
    print(f"\ntarget >= 99.9 % of every topic with the Fast DDS profile: "
          f"{'met' if ok else 'MISSED'}")
    if args.keep:
        print(f'bags kept in {work}')
    else:
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
