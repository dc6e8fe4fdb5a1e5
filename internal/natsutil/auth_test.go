package natsutil_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/guestdiag/guestdiag/internal/natsutil"
)

func writeFile(tb testing.TB, dir, name, body string) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

func TestAuthOptionsRefusesWhatCannotWork(t *testing.T) {
	dir := t.TempDir()
	pw := writeFile(t, dir, "pw", "secret\n")
	empty := writeFile(t, dir, "empty", "\n")
	tests := []struct {
		name string
		auth natsutil.Auth
		want string
	}{
		{"a certificate without its key", natsutil.Auth{CertFile: pw}, "go together"},
		{"two kinds of credentials", natsutil.Auth{CredsFile: pw, User: "u", PasswordFile: pw}, "give one of"},
		{"a user without a password file", natsutil.Auth{User: "u"}, "go together"},
		{"an empty password file", natsutil.Auth{User: "u", PasswordFile: empty}, "is empty"},
		{"a CA file that is not there", natsutil.Auth{CAFile: filepath.Join(dir, "none.pem")}, "no such file"},
		{"an nkey file that holds no seed", natsutil.Auth{NKeyFile: pw}, "nkey"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.auth.Options()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Options() = %v, want an error saying %q", err, tt.want)
			}
		})
	}
	if opts, err := (natsutil.Auth{User: "u", PasswordFile: pw}).Options(); err != nil || len(opts) != 1 {
		t.Errorf("a user and a password file: %d options, %v; want one option", len(opts), err)
	}
}

// testPKI makes a CA and, signed by it, a server certificate for 127.0.0.1
// and a client certificate, as PEM files in dir.
func testPKI(tb testing.TB, dir string) (ca, srvCert, srvKey, cliCert, cliKey string) {
	tb.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		return writeFile(tb, dir, name, string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})))
	}
	writeKey := func(name string, k *ecdsa.PrivateKey) string {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			tb.Fatal(err)
		}
		return write(name, "EC PRIVATE KEY", der)
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "guestdiag test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	sign := func(serial int64, name string, usage x509.ExtKeyUsage, ips []net.IP) ([]byte, *ecdsa.PrivateKey) {
		k := newKey()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			tb.Fatal(err)
		}
		return der, k
	}
	sDER, sKey := sign(2, "nats", x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	cDER, cKey := sign(3, "relay-a", x509.ExtKeyUsageClientAuth, nil)
	return write("ca.pem", "CERTIFICATE", caDER),
		write("server.pem", "CERTIFICATE", sDER), writeKey("server-key.pem", sKey),
		write("client.pem", "CERTIFICATE", cDER), writeKey("client-key.pem", cKey)
}

func TestConnectOverTLSWithAClientCertificate(t *testing.T) {
	dir := t.TempDir()
	ca, sc, sk, cc, ck := testPKI(t, dir)
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: sc, KeyFile: sk, CaFile: ca, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		TLSConfig: tc, TLSVerify: true, TLSTimeout: 2})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	url := strings.Replace(srv.ClientURL(), "nats://", "tls://", 1)

	opts, err := natsutil.Auth{CAFile: ca, CertFile: cc, KeyFile: ck}.Options()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("with the CA and a client certificate: %v", err)
	}
	if _, err := nc.TLSConnectionState(); err != nil {
		t.Errorf("connected without TLS: %v", err)
	}
	nc.Close()

	// Without the client certificate the server refuses the handshake.
	opts, err = natsutil.Auth{CAFile: ca}.Options()
	if err != nil {
		t.Fatal(err)
	}
	if nc, err := nats.Connect(url, append(opts, nats.MaxReconnects(0))...); err == nil {
		nc.Close()
		t.Error("connected without a client certificate to a server that verifies them")
	}
}
