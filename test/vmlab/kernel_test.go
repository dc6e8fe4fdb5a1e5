//go:build linux

package vmlab

import "testing"

func TestParseKernelDepends(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    string
		wantErr bool
	}{
		{"the bookworm cloud meta package", "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n", "linux-image-6.1.0-56-cloud-amd64", false},
		{"an alternative dependency", "linux-image-cloud-amd64\n |Depends: linux-image-6.1.0-57-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n", "linux-image-6.1.0-57-cloud-amd64", false},
		{"a virtual package only", "linux-image-cloud-amd64\n  Depends: <linux-image>\n", "", true},
		{"no dependencies", "linux-image-cloud-amd64\n", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseKernelDepends([]byte(tt.out))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseKernelDepends = %q, %v; want %q, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}
