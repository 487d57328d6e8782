package etcdstore_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/internal/etcdtest"
	"github.com/recoverbot/recoverbot/store/etcdstore"
	"github.com/recoverbot/recoverbot/store/storetest"
)

// pki writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all PEM, into dir.
type pki struct{ ca, serverCert, serverKey, clientCert, clientKey string }

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kd, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", kd)
	}
	p := pki{ca: write("ca.pem", "CERTIFICATE", caDER)}
	p.serverCert, p.serverKey = leaf("server", 2, x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = leaf("client", 3, x509.ExtKeyUsageClientAuth)
	return p
}

// TestOpenTLS: Open with RECOVERBOT_ETCD_CA, _CERT and _KEY reaches an etcd
// that requires client certificates, and writes through it; without the
// client certificate it is refused.
func TestOpenTLS(t *testing.T) {
	p := newPKI(t)
	pair, err := tls.LoadX509KeyPair(p.clientCert, p.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	caPEM, _ := os.ReadFile(p.ca)
	roots.AppendCertsFromPEM(caPEM)
	cluster := etcdtest.StartTLS(t, p.serverCert, p.serverKey, p.ca,
		&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})

	s, err := etcdstore.Open(bg, etcdstore.Config{Endpoints: cluster.Endpoints, CA: p.ca, Cert: p.clientCert, Key: p.clientKey})
	if err != nil {
		t.Fatalf("Open over TLS: %v", err)
	}
	defer s.Close()
	leader(t, s.Client(), s, "/election/tls")
	if err := s.Accept(bg, storetest.Accepted("ev-tls", nil)); err != nil {
		t.Fatalf("Accept over TLS: %v", err)
	}
	if _, err := s.EventRecord(bg, "ev-tls"); err != nil {
		t.Errorf("EventRecord over TLS: %v", err)
	}

	ctx, cancel := context.WithTimeout(bg, 5*time.Second)
	defer cancel()
	if s2, err := etcdstore.Open(ctx, etcdstore.Config{Endpoints: cluster.Endpoints, CA: p.ca, DialTimeout: time.Second}); err == nil {
		s2.Close()
		t.Errorf("Open without a client certificate: got nil error, want a refusal")
	}
	if _, err := etcdstore.Open(bg, etcdstore.Config{Endpoints: cluster.Endpoints, CA: filepath.Join(t.TempDir(), "missing.pem")}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open with a missing CA file: got %v, want it named", err)
	}
}
