nats stream add GUESTDIAG --subjects 'guestdiag.>' --storage file --replicas 3 --retention limits --discard old --max-age 7d --max-bytes 16GiB --max-msgs-per-subject 256 --max-msg-size 512KiB --dupe-window 2h --no-allow-direct --defaults
nats stream add GUESTDIAG_TIMELINE --subjects 'guestdiag_timeline.>' --storage file --replicas 3 --retention limits --discard old --max-age 30d --max-bytes 4GiB --max-msgs-per-subject 500 --dupe-window 2h --allow-direct --defaults
nats kv add guestdiag_vms --replicas 3 --history 1 --storage file --max-value-size 512KiB
nats kv add guestdiag_alerts --replicas 3 --history 1 --storage file --max-value-size 256KiB
nats kv add guestdiag_liveness --replicas 3 --history 1 --storage file --max-value-size 4KiB
