package kmsg

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fifo makes a named pipe held open for writing, which reads like
// /dev/kmsg with nothing new: EAGAIN until a write, and pollable.
func fifo(t *testing.T) (string, *os.File) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kmsg")
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return path, w
}

// readAsync runs r.Read in a goroutine and hands back its outcome.
func readAsync(r *Reader) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := r.Read(make([]byte, 8<<10))
		done <- err
	}()
	return done
}

func TestReaderReturnsPromptlyOnCancel(t *testing.T) {
	sources := []struct {
		name string
		path func(t *testing.T) string
	}{
		{"a reader of an empty pipe", func(t *testing.T) string { p, _ := fifo(t); return p }},
		{"a reader of the real /dev/kmsg at its end", func(t *testing.T) string {
			f, err := os.Open("/dev/kmsg")
			if err != nil {
				t.Skipf("needs a readable /dev/kmsg: %v", err)
			}
			f.Close()
			return "/dev/kmsg"
		}},
	}
	for _, src := range sources {
		t.Run(src.name+" returns within 100 ms of cancel", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			path := src.path(t)
			r, err := Open(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if err := r.SeekEnd(); err != nil && !errors.Is(err, unix.ESPIPE) {
				t.Fatal(err)
			}
			done := readAsync(r)
			select {
			case err := <-done:
				// The real kernel log may have logged a line meanwhile;
				// an empty pipe has nothing to give.
				if path != "/dev/kmsg" {
					t.Fatalf("Read returned %v before cancel", err)
				}
				done = readAsync(r)
			case <-time.After(300 * time.Millisecond):
			}
			began := time.Now()
			cancel()
			select {
			case err := <-done:
				if took := time.Since(began); took > 100*time.Millisecond {
					t.Errorf("Read returned %v after %s, want within 100 ms", err, took)
				}
				if !errors.Is(err, context.Canceled) {
					t.Errorf("Read returned %v, want context.Canceled", err)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("Read still blocked 2 s after cancel")
			}
			if _, err := r.ReadNow(make([]byte, 8<<10)); !errors.Is(err, context.Canceled) {
				t.Errorf("ReadNow after cancel: %v, want context.Canceled", err)
			}
		})
	}
}

func TestReaderWakesForARecord(t *testing.T) {
	path, w := fifo(t)
	r, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, 8<<10)
	if _, err := r.ReadNow(buf); !errors.Is(err, ErrEmpty) {
		t.Fatalf("ReadNow of an empty pipe: %v, want ErrEmpty", err)
	}
	got := make(chan string, 1)
	go func() {
		n, err := r.Read(buf)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(buf[:n])
	}()
	rec := "3,7,100,-;disk failure\n"
	if _, err := w.WriteString(rec); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != rec {
			t.Errorf("got %q, want %q", s, rec)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Read did not return within 2 s of a record")
	}
}

func TestOpenRefusesAFileThePollerCannotWatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "regular")
	if err := os.WriteFile(path, []byte("6,1,2,-;x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r, err := Open(context.Background(), path); err == nil {
		r.Close()
		t.Fatal("Open of a regular file succeeded; a Read on it could not be woken by cancel")
	}
}
