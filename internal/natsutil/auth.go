package natsutil

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
)

// Auth is how a daemon proves who it is to NATS, and how it checks the
// server: TLS with a CA and a client certificate, and one of a creds file
// (JWT and nkey seed), an nkey seed file, or a user with a password file.
// The zero value is a plain connection with no credentials.
type Auth struct {
	CAFile, CertFile, KeyFile string
	CredsFile                 string
	NKeyFile                  string
	User, PasswordFile        string
	// InboxPrefix replaces _INBOX in reply subjects, so that a permission
	// set can let a daemon subscribe to its own replies and nobody else's.
	// Set by the daemon, not by a flag.
	InboxPrefix string
}

// AuthFlags registers --nats-ca, --nats-cert, --nats-key, --nats-creds,
// --nats-nkey, --nats-user and --nats-password-file.
func AuthFlags(fs *flag.FlagSet, a *Auth) {
	fs.StringVar(&a.CAFile, "nats-ca", "", "PEM `file` of the CAs that sign the NATS servers' certificates (turns TLS on)")
	fs.StringVar(&a.CertFile, "nats-cert", "", "PEM `file` of this daemon's client certificate for NATS (with --nats-key)")
	fs.StringVar(&a.KeyFile, "nats-key", "", "PEM `file` of the client certificate's private key")
	fs.StringVar(&a.CredsFile, "nats-creds", "", "NATS credentials `file` (user JWT and nkey seed)")
	fs.StringVar(&a.NKeyFile, "nats-nkey", "", "`file` holding this daemon's NATS nkey seed (SU…)")
	fs.StringVar(&a.User, "nats-user", "", "NATS user `name` (with --nats-password-file)")
	fs.StringVar(&a.PasswordFile, "nats-password-file", "", "`file` holding the NATS user's password")
}

// Options checks a and returns the nats.Options it stands for. Files are
// read now, so that a wrong path is an error at start, not a retry loop.
func (a Auth) Options() ([]nats.Option, error) {
	var opts []nats.Option
	if (a.CertFile == "") != (a.KeyFile == "") {
		return nil, errors.New("nats: --nats-cert and --nats-key go together")
	}
	if a.CAFile != "" {
		if _, err := os.Stat(a.CAFile); err != nil {
			return nil, fmt.Errorf("nats CA: %w", err)
		}
		opts = append(opts, nats.RootCAs(a.CAFile))
	}
	if a.CertFile != "" {
		for _, f := range []string{a.CertFile, a.KeyFile} {
			if _, err := os.Stat(f); err != nil {
				return nil, fmt.Errorf("nats client certificate: %w", err)
			}
		}
		opts = append(opts, nats.ClientCert(a.CertFile, a.KeyFile))
	}
	n := 0
	for _, set := range []bool{a.CredsFile != "", a.NKeyFile != "", a.User != "" || a.PasswordFile != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return nil, errors.New("nats: give one of --nats-creds, --nats-nkey or --nats-user")
	}
	switch {
	case a.CredsFile != "":
		if _, err := os.Stat(a.CredsFile); err != nil {
			return nil, fmt.Errorf("nats creds: %w", err)
		}
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	case a.NKeyFile != "":
		o, err := nats.NkeyOptionFromSeed(a.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats nkey %s: %w", a.NKeyFile, err)
		}
		opts = append(opts, o)
	case a.User != "" || a.PasswordFile != "":
		if a.User == "" || a.PasswordFile == "" {
			return nil, errors.New("nats: --nats-user and --nats-password-file go together")
		}
		b, err := os.ReadFile(a.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("nats password: %w", err)
		}
		pw := strings.TrimRight(string(b), "\r\n")
		if pw == "" {
			return nil, fmt.Errorf("nats password: %s is empty", a.PasswordFile)
		}
		opts = append(opts, nats.UserInfo(a.User, pw))
	}
	if a.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(a.InboxPrefix))
	}
	return opts, nil
}
