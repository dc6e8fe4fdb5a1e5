package executor

import (
	"slices"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestConfigsReadFromTheSchedulersFile(t *testing.T) {
	const file = `
qmp:
  sockets:
    hostA: /run/guestdiag/qmp/{vm}.sock
  prepare_command: [/usr/local/bin/start-incoming, "{vm}", "{to}"]
  prepare_timeout: 30s
  keep_source: true
  poll_interval: 250ms
libvirt:
  virsh: /usr/bin/virsh
  uri: qemu+ssh://admin@{host}/system
  target_uri: qemu+tls://{host}/system
`
	var got struct {
		QMP     QMPConfig     `yaml:"qmp"`
		Libvirt LibvirtConfig `yaml:"libvirt"`
	}
	if err := yaml.Unmarshal([]byte(file), &got); err != nil {
		t.Fatal(err)
	}
	q := got.QMP
	if q.Sockets["hostA"] != "/run/guestdiag/qmp/{vm}.sock" || !slices.Equal(q.PrepareCommand, []string{"/usr/local/bin/start-incoming", "{vm}", "{to}"}) ||
		q.PrepareTimeout != 30*time.Second || !q.KeepSource || q.PollInterval != 250*time.Millisecond {
		t.Errorf("qmp section read as %+v", q)
	}
	if want := (LibvirtConfig{Virsh: "/usr/bin/virsh", URI: "qemu+ssh://admin@{host}/system", TargetURI: "qemu+tls://{host}/system"}); got.Libvirt != want {
		t.Errorf("libvirt section read as %+v, want %+v", got.Libvirt, want)
	}
}
