package hostrelay

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestGlobFilesFindsWhatFilepathGlobFinds(t *testing.T) {
	root := t.TempDir()
	for _, p := range []string{
		"domain-1-a/org.guestdiag.0",
		"domain-2-b/org.guestdiag.0",
		"domain-3-c/other",
		"domain-4-d/org.guestdiag.0/inner",
		"plain/org.guestdiag.0",
	} {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(root, "nowhere"), filepath.Join(root, "domain-3-c", "org.guestdiag.0")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "a-file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, pattern := range []string{
		filepath.Join(root, "*", "org.guestdiag.0"),
		filepath.Join(root, "domain-*", "org.guestdiag.0"),
		filepath.Join(root, "*", "org.guestdiag.*"),
		filepath.Join(root, "plain", "org.guestdiag.0"),
		filepath.Join(root, "*"),
		filepath.Join(root, "a-file", "org.guestdiag.0"),
		filepath.Join(root, "*", "org.guestdiag.0", "inner"),
	} {
		t.Run(pattern, func(t *testing.T) {
			got, err := globFiles(pattern)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := filepath.Glob(pattern)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("globFiles(%q) = %q, want %q", pattern, got, want)
			}
		})
	}
}
