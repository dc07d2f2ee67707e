#!/usr/bin/env bash
# Checks launch/n3f.launch.py and launch/n3f_bag.launch.py under the real `ros2 launch` (issue 13).
#
# Needs a machine with the upstream ROS 2 Python tools sourced: a full ROS 2 install plus a colcon
# build of n3f_ros (`source install/setup.bash`), or a workspace with ros2/launch, launch_ros and
# ros2cli built from source next to n3f_ros. CI cannot fetch those, so it runs only the static
# launch tests (test/e2e/test_launch_files.py); this script is the real-launch counterpart.
#
#   bash scripts/check_launch.sh            # all checks, ~3-5 min on a CPU (node start-up dominates)
#   KEEP=1 bash scripts/check_launch.sh     # keep the work folder (logs, bag) for inspection
#
# The node runs with teacher_random_init:=true (no pretrained weights needed). Each check prints
# PASS/FAIL/SKIP with what it measured; the exit status is the number of failures.
set -u -m        # -m: each launch in its own process group (SIGINT not ignored; orphans findable)

W=$(mktemp -d /tmp/n3f_check_launch.XXXXXX)
FAILS=0
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$((RANDOM % 90 + 10))}
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} RCUTILS_COLORIZED_OUTPUT=0 PYTHONUNBUFFERED=1
SIGINT_LIMIT=5      # [s] ros2 launch escalates to SIGTERM after this (sigterm_timeout)

pass() { echo "PASS  $*"; }
fail() { echo "FAIL  $*"; FAILS=$((FAILS + 1)); }
skip() { echo "SKIP  $*"; }
now() { date +%s.%N; }
since() { python3 -c "print(f'{$(now) - $1:.2f}')"; }

command -v ros2 >/dev/null || { echo "no 'ros2' on PATH: source a ROS 2 install / workspace first"; exit 100; }
ros2 launch --help >/dev/null 2>&1 || { echo "'ros2 launch' is not available (ros2launch missing)"; exit 100; }
PREFIX=$(ros2 pkg prefix n3f_ros 2>/dev/null) || { echo "n3f_ros is not installed (colcon build it and source install/setup.bash)"; exit 100; }
N3F=$PREFIX/lib/n3f_ros/n3f
PY=$(head -1 "$(command -v ros2)" | sed 's/^#!//')      # the interpreter that has rclpy
has_pkg() { ros2 pkg prefix "$1" >/dev/null 2>&1; }
echo "work folder $W, ROS_DOMAIN_ID $ROS_DOMAIN_ID, n3f_ros from $PREFIX"

cleanup() {
  for pg in $(cat "$W"/*.pgid 2>/dev/null); do kill -KILL -- "-$pg" 2>/dev/null; done
  [ -n "${KEEP:-}" ] && echo "kept $W" || rm -rf "$W"
}
trap cleanup EXIT

# start_launch NAME ARGS...: `ros2 launch` in the background (own process group), log in $W/NAME.log.
# SIGINT is reset to its default first: a script started in the background (nohup, CI, a tool)
# passes SIGINT as *ignored* to its children, and launch only sees SIGINT through Python's handler.
start_launch() {
  local name=$1; shift
  "$PY" -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])' \
    ros2 launch "$@" > "$W/$name.log" 2>&1 &
  echo $! > "$W/$name.pgid"
  eval "${name}_PID=$!"
}
# wait_log NAME PATTERN TIMEOUT: 0 when PATTERN shows up in the log in time
wait_log() {
  local end=$(( $(date +%s) + $3 ))
  while [ "$(date +%s)" -lt $end ]; do grep -q -- "$2" "$W/$1.log" && return 0; sleep 0.5; done
  return 1
}
# alive_in_group NAME: processes still in the launch's process group (an orphaned node stays in it)
alive_in_group() { pgrep -g "$(cat "$W/$1.pgid")" 2>/dev/null | wc -l; }
# stop_launch NAME: SIGINT the launch, wait until its whole process group is gone; prints seconds
stop_launch() {
  local t0; t0=$(now); kill -INT "$(cat "$W/$1.pgid")" 2>/dev/null
  for _ in $(seq 1 400); do [ "$(alive_in_group "$1")" = 0 ] && break; sleep 0.05; done
  since "$t0"
}
# wait_exit NAME TIMEOUT: wait for the launch process itself; sets RC
wait_exit() {
  local pid; pid=$(cat "$W/$1.pgid"); local end=$(( $(date +%s) + $2 ))
  while kill -0 "$pid" 2>/dev/null && [ "$(date +%s)" -lt $end ]; do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then RC=timeout; else wait "$pid"; RC=$?; fi
}
no_traceback() { ! grep -q -E "Traceback|KeyboardInterrupt" "$W/$1.log"; }

# listener: PointCloud2 /feature_cloud and DiagnosticArray /diagnostics arrivals (monotonic s) -> file
cat > "$W/listen.py" <<'EOF'
import sys, time
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import PointCloud2
out = open(sys.argv[1], 'a', buffering=1)
rclpy.init()
node = rclpy.create_node('n3f_check_launch_listener')
node.create_subscription(PointCloud2, sys.argv[2] + '/feature_cloud', lambda m: out.write(
    f"cloud {time.monotonic():.3f} {m.width * m.height} {','.join(f.name for f in m.fields)}\n"), 1)
node.create_subscription(DiagnosticArray, sys.argv[2] + '/diagnostics',
                         lambda m: out.write(f'diag {time.monotonic():.3f}\n'), 10)
try:
    rclpy.spin(node)
except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
    pass
EOF
count_after() { awk -v k="$1" -v t="$2" '$1 == k && $2 > t' "$W/arrivals.txt" | wc -l; }
mono() { python3 -c 'import time; print(f"{time.monotonic():.3f}")'; }

echo "== making a small synthetic bag"
"$N3F" synth "$W/bag" --bag --frames 30 --size 160x120 --seed 0 --quiet > "$W/synth.log" 2>&1 || { cat "$W/synth.log"; exit 100; }

echo "== point 7: bag metadata is what rosbag2 writes"
"$PY" - "$W/bag" <<'EOF' && pass "bag: ros_distro names a distro; every MCAP channel has topic_type_hash = type_description_hash" || fail "bag metadata"
import sys, yaml, pathlib
bag = pathlib.Path(sys.argv[1])
info = yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
assert info['ros_distro'] in ('humble', 'jazzy', 'kilted'), info['ros_distro']
hashes = {t['topic_metadata']['name']: t['topic_metadata']['type_description_hash'] for t in info['topics_with_message_count']}
try:
    from mcap.reader import make_reader
except ImportError:
    print('  (python mcap reader not installed: channel metadata not checked)'); sys.exit(0)
with open(next(bag.glob('*.mcap')), 'rb') as f:
    channels = make_reader(f).get_summary().channels.values()
    assert {c.topic: c.metadata.get('topic_type_hash') for c in channels} == hashes, channels
EOF
if has_pkg ros2bag; then
  ros2 bag info "$W/bag" > "$W/bag_info.log" 2>&1 && pass "ros2 bag info reads the bag" || fail "ros2 bag info: $(tail -3 "$W/bag_info.log")"
fi

echo "== point 1: rviz:=true without rviz2"
if has_pkg rviz2; then
  skip "rviz2 is installed here (the launch passes -f <world_frame>; check the fixed frame in the RViz window)"
else
  start_launch rviz n3f_ros n3f.launch.py rviz:=true teacher_random_init:=true
  wait_exit rviz 60
  if [ "$RC" != timeout ] && [ "$RC" != 0 ] && grep -q "rviz2 cannot be started" "$W/rviz.log" && [ "$(alive_in_group rviz)" = 0 ]; then
    pass "exit code $RC, clear error, no process left"
  else
    fail "rviz:=true without rviz2: rc $RC, $(alive_in_group rviz) processes left; $(tail -2 "$W/rviz.log")"
  fi
fi

echo "== n3f.launch.py: namespace, remap, overrides; SIGINT when idle"
start_launch node n3f_ros n3f.launch.py namespace:=robot1 image:=/cam/rgb world_frame:=base_link \
  use_depth:=false pose_source:=odom teacher_random_init:=true
T0=$(now)
if wait_log node "ready:" 240; then
  echo "  node ready after $(since "$T0") s"
  for _ in $(seq 1 15); do        # the CLI's graph view can lag the node by seconds on a busy CPU
    subs=$(ros2 topic info /cam/rgb 2>/dev/null | grep -i "subscription count: 1") && break
    sleep 1
  done
  nodes=$(ros2 node list 2>/dev/null)
  params=$(for p in world_frame use_depth pose_source teacher_random_init; do ros2 param get /robot1/n3f $p 2>/dev/null; done | tr '\n' ' ')
  if echo "$nodes" | grep -q "^/robot1/n3f$" && echo "$subs" | grep -q "1" && ros2 topic list 2>/dev/null | grep "^/robot1/feature_cloud$" >/dev/null \
     && echo "$params" | grep -q "base_link" && echo "$params" | grep -q "False" && echo "$params" | grep -q "odom"; then
    pass "/robot1/n3f subscribes /cam/rgb ($subs), publishes /robot1/feature_cloud; params: $params"
  else
    fail "graph/params: nodes [$nodes] /cam/rgb [$subs] params [$params]"
  fi
  s=$(stop_launch node)
  if python3 -c "import sys; sys.exit(0 if $s < $SIGINT_LIMIT else 1)" && ! grep -q "SIGTERM" "$W/node.log" && no_traceback node; then
    pass "SIGINT (idle): everything gone after $s s, no SIGTERM escalation, no traceback"
  else
    fail "SIGINT (idle): $s s; $(grep -E 'SIGTERM|Traceback' "$W/node.log" | head -2)"
  fi
else
  fail "node not ready: $(tail -5 "$W/node.log")"; stop_launch node >/dev/null
fi

echo "== point 5: SIGINT during start-up"
start_launch startup n3f_ros n3f.launch.py teacher_random_init:=true
wait_log startup "process started" 60; sleep 1.0
s=$(stop_launch startup)
if python3 -c "import sys; sys.exit(0 if $s < $SIGINT_LIMIT else 1)" && no_traceback startup; then
  pass "SIGINT 1 s into start-up: gone after $s s, no KeyboardInterrupt traceback"
else
  fail "SIGINT during start-up: $s s; $(grep -E -A3 'Traceback' "$W/startup.log" | head -6)"
fi

echo "== point 4: player:=ros2 where rosbag2 is missing"
if has_pkg ros2bag; then
  skip "ros2bag is installed here"
else
  start_launch noros2bag n3f_ros n3f_bag.launch.py bag:="$W/bag" teacher_random_init:=true
  wait_exit noros2bag 60
  if [ "$RC" != timeout ] && [ "$RC" != 0 ] && grep -q "player:=n3f" "$W/noros2bag.log" && [ "$(alive_in_group noros2bag)" = 0 ] && no_traceback noros2bag; then
    pass "exit code $RC, says what is missing and suggests player:=n3f, nothing left running"
  else
    fail "player:=ros2 without rosbag2: rc $RC, $(alive_in_group noros2bag) left; $(tail -3 "$W/noros2bag.log")"
  fi
fi

echo "== point 4: a player that fails after the node is up shuts the launch down"
start_launch badplayer n3f_ros n3f_bag.launch.py bag:="$W/bag" player:=n3f teacher_random_init:=true \
  image:=/not/in/bag image_compressed:=/not/in/bag/either
wait_exit badplayer 300
if [ "$RC" != timeout ] && grep -q "bag player exited with code" "$W/badplayer.log" && [ "$(alive_in_group badplayer)" = 0 ]; then
  pass "player exit -> launch shut down (rc $RC): $(grep -o 'bag player exited with code [0-9]*' "$W/badplayer.log" | head -1)"
else
  fail "failing player: rc $RC, $(alive_in_group badplayer) left; $(tail -3 "$W/badplayer.log")"; stop_launch badplayer >/dev/null
fi

for PLAYER in n3f $(has_pkg ros2bag && echo ros2); do
  echo "== points 2, 3, 5: n3f_bag.launch.py player:=$PLAYER"
  : > "$W/arrivals.txt"
  "$PY" "$W/listen.py" "$W/arrivals.txt" "" > "$W/listen.log" 2>&1 &
  LISTEN=$!
  start_launch bag n3f_ros n3f_bag.launch.py bag:="$W/bag" player:=$PLAYER teacher_random_init:=true
  T0=$(now)
  if wait_log bag "bag finished" 300; then
    t_end=$(mono)
    echo "  node ready, player started and bag finished after $(since "$T0") s"
    grep -q "n3f node is ready: starting the bag player" "$W/bag.log" && pass "player started on the node's ready line" \
      || fail "no readiness line before the player"
    for _ in $(seq 1 120); do [ "$(count_after cloud 0)" -gt 0 ] && break; sleep 1; done
    clouds=$(count_after cloud 0)
    [ "$clouds" -gt 0 ] && pass "feature_cloud received ($clouds so far; fields $(grep ^cloud "$W/arrivals.txt" | tail -1 | cut -d' ' -f4), $(grep ^cloud "$W/arrivals.txt" | tail -1 | cut -d' ' -f3) points)" \
      || fail "no feature_cloud within 120 s after the bag ended"
    t_mark=$(mono); sleep 6
    c=$(count_after cloud "$t_mark"); d=$(count_after diag "$t_mark")
    [ "$c" -ge 2 ] && [ "$d" -ge 3 ] && pass "after the bag ended (/clock stopped): $c feature_cloud and $d diagnostics in 6 s" \
      || fail "after the bag ended: $c feature_cloud, $d diagnostics in 6 s"
    s=$(stop_launch bag)
    if python3 -c "import sys; sys.exit(0 if $s < $SIGINT_LIMIT else 1)" && ! grep -q "SIGTERM" "$W/bag.log" && no_traceback bag; then
      pass "SIGINT under training load: everything gone after $s s, no SIGTERM escalation"
    else
      fail "SIGINT under training load: $s s; $(grep -E 'SIGTERM|Traceback' "$W/bag.log" | head -2)"
    fi
  else
    fail "bag launch ($PLAYER): no 'bag finished' in 300 s: $(tail -5 "$W/bag.log")"; stop_launch bag >/dev/null
  fi
  kill -INT $LISTEN 2>/dev/null; wait $LISTEN 2>/dev/null
done

echo "== $FAILS failure(s)"
exit $FAILS
