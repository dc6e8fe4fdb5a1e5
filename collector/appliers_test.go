package collector

import "testing"

func TestVMOfSubject(t *testing.T) {
	tests := []struct {
		name, subject, want string
	}{
		{"a report names its host and VM", "guestdiag.report.hv1.web01.network", "hv1.web01"},
		{"a heartbeat names the same VM as its reports", "guestdiag.heartbeat.hv1.web01", "hv1.web01"},
		{"a channel event names the same VM", "guestdiag.channel.hv1.web01", "hv1.web01"},
		{"an alert is keyed by its severity and host", "guestdiag.alert.crit.hv1.web01", "crit.hv1"},
		{"a subject without a VM is its own key", "guestdiag.plan", "guestdiag.plan"},
		{"a host sample is its own key", "guestdiag.host.hv1", "guestdiag.host.hv1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := vmOfSubject(tt.subject); got != tt.want {
				t.Errorf("vmOfSubject(%q) = %q, want %q", tt.subject, got, tt.want)
			}
		})
	}
}
