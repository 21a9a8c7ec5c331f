package certs

import (
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"
)

var (
	t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	id = ServiceIdentity("clonegate-webhook", "clonegate-system", []string{"127.0.0.1", "localhost"})
)

const day = 24 * time.Hour

func mustPlan(t *testing.T, b *Bundle, id Identity, at time.Time) *Bundle {
	t.Helper()
	next, _, err := Plan(b, id, Validity{}, at)
	if err != nil {
		t.Fatal(err)
	}
	return next
}

func TestServiceIdentity(t *testing.T) {
	got := ServiceIdentity("svc", "ns", []string{"127.0.0.1", "", "example.com", "::1"})
	wantDNS := []string{"svc.ns.svc", "svc.ns.svc.cluster.local", "example.com"}
	if strings.Join(got.DNSNames, ",") != strings.Join(wantDNS, ",") {
		t.Errorf("DNS names %v, want %v", got.DNSNames, wantDNS)
	}
	if len(got.IPs) != 2 || !got.IPs[0].Equal(net.ParseIP("127.0.0.1")) || !got.IPs[1].Equal(net.ParseIP("::1")) {
		t.Errorf("IPs %v, want [127.0.0.1 ::1]", got.IPs)
	}
}

func TestPlan(t *testing.T) {
	fresh := mustPlan(t, nil, id, t0)
	otherCA := mustPlan(t, nil, id, t0)
	// A serving certificate signed by a CA that is not the Secret's.
	foreign, err := assemble(fresh.CA, fresh.CAKey, nil, otherCA.Cert, otherCA.Key)
	if err != nil {
		t.Fatal(err)
	}
	mismatched, err := assemble(fresh.CA, fresh.CAKey, nil, fresh.Cert, otherCA.Key)
	if err != nil {
		t.Fatal(err)
	}
	// An earlier CA, expired by now, still listed in the bundle.
	expiredCA := mustPlan(t, nil, id, t0.Add(-20*365*day))
	withExpired, err := assemble(fresh.CA, fresh.CAKey, []*x509.Certificate{expiredCA.CA}, fresh.Cert, fresh.Key)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		current *Bundle
		id      Identity
		at      time.Time
		reason  string // prefix; "" when nothing is due
		newCA   bool
		trusted int // earlier CAs in the bundle afterwards
	}{
		{"creates a CA and certificate when there are none", nil, id, t0, "no certificate yet", true, 0},
		{"keeps a fresh bundle", fresh, id, t0.Add(time.Minute), "", false, 0},
		{"keeps the serving certificate until two thirds of its life", fresh, id, t0.Add(240 * day), "", false, 0},
		{"reissues the serving certificate at two thirds of its life", fresh, id, t0.Add(245 * day), "serving certificate due for rotation", false, 0},
		{"reissues the serving certificate after it expired", fresh, id, t0.Add(400 * day), "serving certificate due for rotation", false, 0},
		{"rotates the CA at two thirds of its life, keeping the old CA trusted", fresh, id, t0.Add(7 * 365 * day), "CA due for rotation", true, 1},
		{"reissues a certificate that lacks a new name", fresh, ServiceIdentity("other", "ns", nil), t0, `serving certificate lacks DNS name "other.ns.svc"`, false, 0},
		{"reissues a certificate that lacks a new IP", fresh, ServiceIdentity("clonegate-webhook", "clonegate-system", []string{"10.0.0.1"}), t0, "serving certificate lacks IP address 10.0.0.1", false, 0},
		{"reissues a certificate signed by another CA", foreign, id, t0, "serving certificate not signed by the current CA", false, 0},
		{"reissues a certificate whose key does not match", mismatched, id, t0, "serving certificate and key do not match", false, 0},
		{"drops an expired earlier CA from the bundle", withExpired, id, t0, "an earlier CA expired", false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next, reason, err := Plan(tt.current, tt.id, Validity{}, tt.at)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(reason, tt.reason) || (tt.reason == "") != (reason == "") {
				t.Errorf("reason %q, want %q", reason, tt.reason)
			}
			if tt.reason == "" && next != tt.current {
				t.Errorf("nothing was due, yet a new bundle was made")
			}
			if tt.current != nil && (next.CA != tt.current.CA) != tt.newCA {
				t.Errorf("new CA: %v, want %v", next.CA != tt.current.CA, tt.newCA)
			}
			if len(next.Trusted) != tt.trusted {
				t.Errorf("%d earlier CAs trusted, want %d", len(next.Trusted), tt.trusted)
			}
			checkBundle(t, next, tt.id, tt.at)
		})
	}
}

// checkBundle verifies what the apiserver will: the serving certificate
// chains to the injected bundle for every name, now; and the Secret data
// parses back to the same bundle.
func checkBundle(t *testing.T, b *Bundle, id Identity, at time.Time) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b.CABundle()) {
		t.Fatal("ca.crt holds no certificate")
	}
	for _, name := range append(id.DNSNames, ipStrings(id.IPs)...) {
		if _, err := b.Cert.Verify(x509.VerifyOptions{DNSName: name, Roots: pool, CurrentTime: at}); err != nil {
			t.Errorf("serving certificate does not verify for %s: %v", name, err)
		}
	}
	if b.Cert.NotAfter.After(b.CA.NotAfter) {
		t.Errorf("serving certificate (until %s) outlives its CA (until %s)", b.Cert.NotAfter, b.CA.NotAfter)
	}
	back, err := ParseBundle(b.Data())
	if err != nil {
		t.Fatalf("Secret data does not parse back: %v", err)
	}
	if !back.Cert.Equal(b.Cert) || !back.CA.Equal(b.CA) || len(back.Trusted) != len(b.Trusted) {
		t.Error("Secret data parses back to a different bundle")
	}
}

func ipStrings(ips []net.IP) []string {
	var out []string
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return out
}

func TestCARotationKeepsOldServingCertTrusted(t *testing.T) {
	// A replica that has not yet picked up the rotation still presents the
	// certificate signed by the old CA: the injected bundle must trust it.
	old := mustPlan(t, nil, id, t0)
	at := t0.Add(7 * 365 * day)
	rotated := mustPlan(t, old, id, at)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(rotated.CABundle())
	// The old serving certificate expired long ago at this point in a real
	// cluster; check the chain as of its own lifetime.
	if _, err := old.Cert.Verify(x509.VerifyOptions{DNSName: id.DNSNames[0], Roots: pool, CurrentTime: t0.Add(day)}); err != nil {
		t.Errorf("old serving certificate not trusted by the rotated bundle: %v", err)
	}
}

func TestParseBundleNamesTheBrokenKey(t *testing.T) {
	good := mustPlan(t, nil, id, t0).Data()
	for _, key := range []string{KeyBundle, KeyCAKey, KeyCert, KeyKey} {
		data := map[string][]byte{}
		for k, v := range good {
			data[k] = v
		}
		data[key] = []byte("garbage")
		_, err := ParseBundle(data)
		if err == nil || !strings.HasPrefix(err.Error(), key+":") {
			t.Errorf("with %s broken: error %v, want one naming %s", key, err, key)
		}
	}
}

func TestNextCheck(t *testing.T) {
	b := mustPlan(t, nil, id, t0)
	if got, want := b.NextCheck(), RenewAt(b.Cert); !got.Equal(want) {
		t.Errorf("next check %s, want the serving certificate's renewal %s", got, want)
	}
}

// A new CA issued over a deleted or damaged Secret keeps trusting the CAs
// that still parse, so a replica serving the old certificate stays trusted;
// expired ones, leaf certificates and duplicates are not carried.
func TestCarryKeepsOldCAsTrusted(t *testing.T) {
	old := mustPlan(t, nil, id, t0)
	expired := mustPlan(t, nil, id, t0.Add(-20*365*day))
	fresh := mustPlan(t, nil, id, t0)
	damaged := append(append([]byte("not pem\n"), old.CABundle()...), []byte("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")...)
	cas := append(ParseCAs(damaged), append(ParseCAs(old.CABundle()), expired.CA, old.Cert, fresh.CA)...)
	got, err := Carry(fresh, cas, t0.Add(day))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Trusted) != 1 || !got.Trusted[0].Equal(old.CA) {
		t.Fatalf("trusted %d CAs, want only the old one", len(got.Trusted))
	}
	parsed, err := ParseBundle(got.Data())
	if err != nil || !parsed.CA.Equal(fresh.CA) || len(parsed.Trusted) != 1 {
		t.Fatalf("the Secret's data: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(got.CABundle())
	for _, b := range []*Bundle{old, fresh} {
		if _, err := b.Cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: id.DNSNames[0], CurrentTime: t0.Add(day)}); err != nil {
			t.Errorf("a serving certificate is not trusted by the carried bundle: %v", err)
		}
	}
	if same, _ := Carry(fresh, nil, t0); same != fresh {
		t.Error("nothing to carry: want the bundle itself")
	}
}
