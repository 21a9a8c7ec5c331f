// Package certs gives the webhook server a TLS certificate with no other
// dependency: a self-signed CA and a serving certificate kept in one Secret,
// written to the cert dir, the CA injected into the webhook configurations,
// and both rotated well before they expire.
//
// This file is the pure part — what to store, given what is stored and the
// time — so that every rotation decision is a table test, no cluster needed.
package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"time"
)

// Lifetimes. Each certificate is replaced once two thirds of its lifetime
// have passed: the serving certificate after about 243 days, with 4 months
// still to run; the CA after about 6 years 8 months, with over 3 years left,
// so a serving certificate (1 year) never outlives the CA that signed it.
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultCertValidity = 365 * 24 * time.Hour
	// backdate tolerates clocks behind ours (the apiserver's, another replica's).
	backdate = time.Hour
)

// Keys of the Secret. It is of type kubernetes.io/tls, so tls.crt and tls.key
// are the serving pair any tool expects; ca.crt is the trust bundle injected
// into caBundle: the current CA first, then earlier CAs that have not expired
// yet, so servers still holding a certificate from the previous CA stay
// trusted across a CA rotation.
const (
	KeyCert   = "tls.crt"
	KeyKey    = "tls.key"
	KeyBundle = "ca.crt"
	KeyCAKey  = "ca.key"
)

// Identity is what the serving certificate must name.
type Identity struct {
	DNSNames []string
	IPs      []net.IP
}

// ServiceIdentity names a Service the way the apiserver dials it
// (<service>.<namespace>.svc) and the fully qualified form, plus extras
// (host names or IP addresses, as text) for clients that dial otherwise.
func ServiceIdentity(service, namespace string, extra []string) Identity {
	id := Identity{DNSNames: []string{
		fmt.Sprintf("%s.%s.svc", service, namespace),
		fmt.Sprintf("%s.%s.svc.cluster.local", service, namespace),
	}}
	for _, e := range extra {
		if ip := net.ParseIP(e); ip != nil {
			id.IPs = append(id.IPs, ip)
		} else if e != "" {
			id.DNSNames = append(id.DNSNames, e)
		}
	}
	return id
}

// Validity sets the lifetimes; zero fields take the defaults.
type Validity struct {
	CA, Cert time.Duration
}

func (v Validity) withDefaults() Validity {
	if v.CA == 0 {
		v.CA = DefaultCAValidity
	}
	if v.Cert == 0 {
		v.Cert = DefaultCertValidity
	}
	return v
}

// Bundle is the content of the Secret, parsed.
type Bundle struct {
	CA      *x509.Certificate
	CAKey   *ecdsa.PrivateKey
	Trusted []*x509.Certificate // earlier CAs still trusted, not including CA
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey

	data map[string][]byte
}

// Data is the Secret's data for the bundle.
func (b *Bundle) Data() map[string][]byte { return b.data }

// CABundle is the PEM trust bundle for caBundle.
func (b *Bundle) CABundle() []byte { return b.data[KeyBundle] }

// ParseBundle reads a Secret's data. It fails, saying which key is wrong,
// when any part is missing or unreadable.
func ParseBundle(data map[string][]byte) (*Bundle, error) {
	b := &Bundle{data: data}
	cas, err := parseCerts(data[KeyBundle])
	if err != nil || len(cas) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate (%v)", KeyBundle, err)
	}
	b.CA, b.Trusted = cas[0], cas[1:]
	if b.CAKey, err = parseKey(data[KeyCAKey]); err != nil {
		return nil, fmt.Errorf("%s: %w", KeyCAKey, err)
	}
	certs, err := parseCerts(data[KeyCert])
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate (%v)", KeyCert, err)
	}
	b.Cert = certs[0]
	if b.Key, err = parseKey(data[KeyKey]); err != nil {
		return nil, fmt.Errorf("%s: %w", KeyKey, err)
	}
	return b, nil
}

// Plan decides what the Secret should hold at now. It returns current
// itself (and an empty reason) when nothing is due, or a new bundle and why
// it was made. current may be nil (no Secret yet) or have failed to parse
// (pass nil and the parse error as the reason is then "unreadable").
func Plan(current *Bundle, id Identity, v Validity, now time.Time) (*Bundle, string, error) {
	v = v.withDefaults()
	if current == nil {
		b, err := issueAll(nil, id, v, now)
		return b, "no certificate yet", err
	}
	if due(current.CA, now) || !samePublicKey(current.CA, current.CAKey) {
		b, err := issueAll(current, id, v, now)
		return b, fmt.Sprintf("CA due for rotation (expires %s)", current.CA.NotAfter.UTC().Format(time.RFC3339)), err
	}
	if reason := certProblem(current, id, now); reason != "" {
		b, err := issueServing(current.CA, current.CAKey, trustedAt(current.Trusted, now), id, v, now)
		return b, reason, err
	}
	if kept := trustedAt(current.Trusted, now); len(kept) != len(current.Trusted) {
		b, err := assemble(current.CA, current.CAKey, kept, current.Cert, current.Key)
		return b, "an earlier CA expired; dropped from the trust bundle", err
	}
	return current, "", nil
}

// RenewAt is when a certificate is due for replacement: two thirds through
// its lifetime.
func RenewAt(c *x509.Certificate) time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 2 / 3)
}

// NextCheck is when b next needs attention: the earlier of its two renewals.
func (b *Bundle) NextCheck() time.Time {
	return minTime(RenewAt(b.CA), RenewAt(b.Cert))
}

func due(c *x509.Certificate, now time.Time) bool { return !now.Before(RenewAt(c)) }

// certProblem says why the serving certificate must be reissued, or "".
func certProblem(b *Bundle, id Identity, now time.Time) string {
	switch {
	case due(b.Cert, now):
		return fmt.Sprintf("serving certificate due for rotation (expires %s)", b.Cert.NotAfter.UTC().Format(time.RFC3339))
	case !samePublicKey(b.Cert, b.Key):
		return "serving certificate and key do not match"
	case b.Cert.CheckSignatureFrom(b.CA) != nil:
		return "serving certificate not signed by the current CA"
	}
	for _, name := range id.DNSNames {
		if !slices.Contains(b.Cert.DNSNames, name) {
			return fmt.Sprintf("serving certificate lacks DNS name %q", name)
		}
	}
	for _, ip := range id.IPs {
		if !slices.ContainsFunc(b.Cert.IPAddresses, ip.Equal) {
			return fmt.Sprintf("serving certificate lacks IP address %s", ip)
		}
	}
	return ""
}

// issueAll makes a new CA and serving certificate. The previous CA (and its
// trusted predecessors) stay in the bundle until they expire.
func issueAll(prev *Bundle, id Identity, v Validity, now time.Time) (*Bundle, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "clonegate-ca", Organization: []string{"clonegate"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(v.CA),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	ca, err := sign(tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	var trusted []*x509.Certificate
	if prev != nil {
		trusted = trustedAt(append([]*x509.Certificate{prev.CA}, prev.Trusted...), now)
	}
	return issueServing(ca, caKey, trusted, id, v, now)
}

// issueServing makes a serving certificate signed by ca, never outliving it.
func issueServing(ca *x509.Certificate, caKey *ecdsa.PrivateKey, trusted []*x509.Certificate, id Identity, v Validity, now time.Time) (*Bundle, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	cn := "clonegate"
	if len(id.DNSNames) > 0 {
		cn = id.DNSNames[0]
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		DNSNames:    id.DNSNames,
		IPAddresses: id.IPs,
		NotBefore:   now.Add(-backdate),
		NotAfter:    minTime(now.Add(v.Cert), ca.NotAfter),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	cert, err := sign(tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	return assemble(ca, caKey, trusted, cert, key)
}

// IssueServing signs a serving certificate for id with b's CA, valid from
// notBefore to notAfter, and returns the Secret data holding it. Tests use it
// to plant a certificate about to expire.
func IssueServing(b *Bundle, id Identity, notBefore, notAfter time.Time) (map[string][]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		Subject: pkix.Name{CommonName: "clonegate"}, DNSNames: id.DNSNames, IPAddresses: id.IPs,
		NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	cert, err := sign(tmpl, b.CA, &key.PublicKey, b.CAKey)
	if err != nil {
		return nil, err
	}
	nb, err := assemble(b.CA, b.CAKey, b.Trusted, cert, key)
	if err != nil {
		return nil, err
	}
	return nb.Data(), nil
}

func assemble(ca *x509.Certificate, caKey *ecdsa.PrivateKey, trusted []*x509.Certificate, cert *x509.Certificate, key *ecdsa.PrivateKey) (*Bundle, error) {
	caKeyPEM, err := encodeKey(caKey)
	if err != nil {
		return nil, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	var bundle bytes.Buffer
	for _, c := range append([]*x509.Certificate{ca}, trusted...) {
		bundle.Write(encodeCert(c))
	}
	return &Bundle{CA: ca, CAKey: caKey, Trusted: trusted, Cert: cert, Key: key, data: map[string][]byte{
		KeyBundle: bundle.Bytes(),
		KeyCAKey:  caKeyPEM,
		KeyCert:   encodeCert(cert),
		KeyKey:    keyPEM,
	}}, nil
}

func trustedAt(cas []*x509.Certificate, now time.Time) []*x509.Certificate {
	var kept []*x509.Certificate
	for _, c := range cas {
		if now.Before(c.NotAfter) {
			kept = append(kept, c)
		}
	}
	return kept
}

func sign(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, priv *ecdsa.PrivateKey) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, priv)
	if err != nil {
		return nil, fmt.Errorf("signing certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	return x509.ParseCertificate(der)
}

func samePublicKey(c *x509.Certificate, key *ecdsa.PrivateKey) bool {
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	return ok && key != nil && pub.Equal(&key.PublicKey)
}

func encodeCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func encodeKey(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out, nil
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}

func parseKey(data []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM private key")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("private key is %T, want ECDSA", k)
	}
	return ec, nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// Carry returns b trusting also every CA of cas that has not expired at now:
// the CAs that signed certificates replicas may still be serving when a new
// CA replaces a Secret that was deleted or damaged. b itself is returned when
// there is nothing to add.
func Carry(b *Bundle, cas []*x509.Certificate, now time.Time) (*Bundle, error) {
	trusted := slices.Clone(b.Trusted)
	for _, c := range trustedAt(cas, now) {
		if !c.IsCA || c.Equal(b.CA) || slices.ContainsFunc(trusted, c.Equal) {
			continue
		}
		trusted = append(trusted, c)
	}
	if len(trusted) == len(b.Trusted) {
		return b, nil
	}
	return assemble(b.CA, b.CAKey, trusted, b.Cert, b.Key)
}

// ParseCAs reads the certificates of a PEM bundle that parse, skipping the
// rest: what is left of a damaged Secret's ca.crt, or of a caBundle.
func ParseCAs(data []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for len(data) > 0 {
		var block *pem.Block
		if block, data = pem.Decode(data); block == nil {
			break
		}
		if c, err := x509.ParseCertificate(block.Bytes); err == nil && block.Type == "CERTIFICATE" {
			out = append(out, c)
		}
	}
	return out
}
