package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/clonegate/clonegate/internal/testenv"
)

// reviewBody is a valid review of a clone, as the apiserver sends it.
const reviewBody = `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"sec-1",` +
	`"kind":{"group":"","version":"v1","kind":"PersistentVolumeClaim"},"resource":{"group":"","version":"v1","resource":"persistentvolumeclaims"},` +
	`"name":"c","namespace":"default","operation":"CREATE","userInfo":{"username":"admin"},` +
	`"object":{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"c","namespace":"default"},` +
	`"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}},"dataSourceRef":{"kind":"PersistentVolumeClaim","name":"s","namespace":"other"}}}}}`

func webhookAddr(e *env) string {
	w := e.Env.WebhookInstallOptions
	return net.JoinHostPort(w.LocalServingHost, strconv.Itoa(w.LocalServingPort))
}

func servingRoots(e *env) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.Env.WebhookInstallOptions.LocalServingCAData)
	return pool
}

// postReview sends reviewBody to the mutating path over TLS with cfg.
func postReview(e *env, cfg *tls.Config) (*admissionv1.AdmissionReview, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	resp, err := c.Post("https://"+webhookAddr(e)+"/mutate--v1-persistentvolumeclaim", "application/json", strings.NewReader(reviewBody))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var review admissionv1.AdmissionReview
	err = json.NewDecoder(resp.Body).Decode(&review)
	return &review, err
}

func TestTLSDefaults(t *testing.T) {
	e := shared["gate-off"]
	addr := webhookAddr(e)
	// TLS 1.3 only by default: a TLS 1.2 client is refused.
	if conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: servingRoots(e), MaxVersion: tls.VersionTLS12}); err == nil {
		conn.Close()
		t.Errorf("a TLS 1.2 client connected; want it refused (--tls-min-version defaults to 1.3)")
	} else {
		t.Logf("TLS 1.2 client: %v", err)
	}
	// HTTP/2 off by default: a client offering h2 gets HTTP/1.1.
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: servingRoots(e), NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if st := conn.ConnectionState(); st.Version != tls.VersionTLS13 || st.NegotiatedProtocol == "h2" {
		t.Errorf("negotiated TLS %x and %q; want TLS 1.3 and not h2", st.Version, st.NegotiatedProtocol)
	}
	conn.Close()
	// A valid review over TLS is answered: the checks above refuse only what they should.
	review, err := postReview(e, &tls.Config{RootCAs: servingRoots(e)})
	if err != nil || review.Response == nil || review.Response.Allowed || review.Response.UID != "sec-1" {
		t.Fatalf("a review over TLS 1.3: %v %+v", err, review)
	}
}

// No port answers a review in plaintext: the webhook port speaks only TLS,
// and the probe and metrics ports do not serve the webhook paths.
func TestNoPlaintextReviews(t *testing.T) {
	e := shared["gate-off"]
	for _, base := range []string{"http://" + webhookAddr(e), "http://" + e.Server.ProbeAddr, "http://" + e.Server.MetricsAddr} {
		for _, path := range []string{"/mutate--v1-persistentvolumeclaim", "/validate--v1-persistentvolumeclaim"} {
			resp, err := http.Post(base+path, "application/json", strings.NewReader(reviewBody))
			if err != nil {
				continue // refused outright: fine
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || bytes.Contains(body, []byte("AdmissionReview")) {
				t.Errorf("%s%s answered a plaintext review: %d %s", base, path, resp.StatusCode, body)
			}
		}
	}
}

func TestHTTP2WhenEnabled(t *testing.T) {
	e := newEnv(t, testenv.Options{}, "--enable-http2")
	conn, err := tls.Dial("tcp", webhookAddr(e), &tls.Config{RootCAs: servingRoots(e), NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Errorf("negotiated %q with --enable-http2, want h2", p)
	}
}

// --client-ca-file: only a client with a certificate of that CA gets an
// answer; the rest (including an apiserver not configured to present one)
// are refused during the handshake.
func TestClientCertificateRequired(t *testing.T) {
	ca := newCA(t)
	caFile := filepath.Join(t.TempDir(), "client-ca.crt")
	if err := os.WriteFile(caFile, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, testenv.Options{}, "--client-ca-file", caFile)

	if _, err := postReview(e, &tls.Config{RootCAs: servingRoots(e)}); err == nil {
		t.Errorf("a client without a certificate got an answer")
	}
	other := newCA(t)
	otherCert, otherKey, _ := other.issue(t, "kube-apiserver", x509.ExtKeyUsageClientAuth)
	if pair, err := tls.X509KeyPair(otherCert, otherKey); err != nil {
		t.Fatal(err)
	} else if _, err := postReview(e, &tls.Config{RootCAs: servingRoots(e), Certificates: []tls.Certificate{pair}}); err == nil {
		t.Errorf("a client with a certificate of another CA got an answer")
	}
	certPEM, keyPEM, _ := ca.issue(t, "kube-apiserver", x509.ExtKeyUsageClientAuth)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	review, err := postReview(e, &tls.Config{RootCAs: servingRoots(e), Certificates: []tls.Certificate{pair}})
	if err != nil || review.Response == nil || review.Response.UID != "sec-1" || review.Response.Allowed {
		t.Fatalf("a client with a certificate of the CA: %v %+v", err, review)
	}
	// This apiserver presents no client certificate to webhooks: its clone
	// reviews fail closed.
	ns := e.namespace(t)
	expect(t, e.apply(t, ns, cloneYAML("clone", "src", "1Gi")), 1, `failed calling webhook "validate.clonegate.dev"`)
}

// The RBAC in config/rbac, applied to the real apiserver, lets the service
// account do what clonegate needs and nothing more (SubjectAccessReviews
// through kubectl auth can-i --as).
func TestRBACLeastPrivilege(t *testing.T) {
	e := shared["gate-off"]
	const ns = "clonegate-system"
	if r := e.Kubectl("apiVersion: v1\nkind: Namespace\nmetadata: {name: clonegate-system}\n", "apply", "-f", "-"); r.Code != 0 {
		t.Fatal(r.Output())
	}
	expect(t, e.Kubectl("", "apply", "-n", ns, "-k", filepath.Join(root, "config", "rbac")), 0)
	sa := "system:serviceaccount:clonegate-system:clonegate"
	const (
		core, storage, snap, authz, adm, rbac = "", "storage.k8s.io", "snapshot.storage.k8s.io", "authorization.k8s.io", "admissionregistration.k8s.io", "rbac.authorization.k8s.io"
		all                                   = ""
	)
	cases := []struct {
		verb, group, resource, namespace, name string
		want                                   bool
	}{
		// What the rules read.
		{"get", core, "persistentvolumeclaims", "apps", "src", true},
		{"list", core, "persistentvolumeclaims", all, "", true},
		{"watch", core, "persistentvolumeclaims", all, "", true},
		{"list", core, "persistentvolumes", "", "", true},
		{"watch", core, "persistentvolumes", "", "", true},
		{"get", core, "persistentvolumes", "", "pv", true}, // a live read when the cache misses a volume just bound
		{"get", storage, "storageclasses", "", "fast", true},
		{"list", storage, "storageclasses", "", "", true},
		{"watch", storage, "storageclasses", "", "", true},
		{"get", snap, "volumesnapshots", "apps", "nightly", true},
		{"list", snap, "volumesnapshots", all, "", true},
		{"watch", snap, "volumesnapshots", all, "", true},
		{"get", snap, "volumesnapshotcontents", "", "c", true},
		{"list", snap, "volumesnapshotcontents", "", "", true},
		{"watch", snap, "volumesnapshotcontents", "", "", true},
		{"list", "populator.storage.k8s.io", "volumepopulators", "", "", true},
		{"watch", "populator.storage.k8s.io", "volumepopulators", "", "", true},
		{"list", "gateway.networking.k8s.io", "referencegrants", "apps", "", true},
		{"create", authz, "subjectaccessreviews", "", "", true},
		// Its own two webhook configurations, by name: inject, and watch for an emptied caBundle.
		{"get", adm, "mutatingwebhookconfigurations", "", "clonegate-mutating", true},
		{"update", adm, "mutatingwebhookconfigurations", "", "clonegate-mutating", true},
		{"watch", adm, "mutatingwebhookconfigurations", "", "clonegate-mutating", true},
		{"get", adm, "validatingwebhookconfigurations", "", "clonegate-validating", true},
		{"update", adm, "validatingwebhookconfigurations", "", "clonegate-validating", true},
		{"watch", adm, "validatingwebhookconfigurations", "", "clonegate-validating", true},
		// Its certificate Secret, in its own namespace.
		{"get", core, "secrets", ns, "clonegate-webhook-cert", true},
		{"update", core, "secrets", ns, "clonegate-webhook-cert", true},
		{"watch", core, "secrets", ns, "clonegate-webhook-cert", true},
		{"create", core, "secrets", ns, "", true},

		// Verbs it does not use.

		{"get", "gateway.networking.k8s.io", "referencegrants", "apps", "g", false},
		{"patch", adm, "mutatingwebhookconfigurations", "", "clonegate-mutating", false},
		{"patch", adm, "validatingwebhookconfigurations", "", "clonegate-validating", false},
		{"watch", core, "secrets", ns, "", false},
		// Nothing else.
		{"create", core, "persistentvolumeclaims", "apps", "", false},
		{"update", core, "persistentvolumeclaims", "apps", "src", false},
		{"delete", core, "persistentvolumeclaims", "apps", "src", false},
		{"patch", core, "persistentvolumes", "", "pv", false},
		{"create", snap, "volumesnapshots", "apps", "", false},
		{"get", core, "secrets", "default", "any", false},
		{"get", core, "secrets", "default", "clonegate-webhook-cert", false},
		{"create", core, "secrets", "default", "", false},
		{"list", core, "secrets", ns, "", false},
		{"get", core, "secrets", ns, "other", false},
		{"delete", core, "secrets", ns, "clonegate-webhook-cert", false},
		{"patch", adm, "mutatingwebhookconfigurations", "", "someone-elses", false},
		{"patch", adm, "validatingwebhookconfigurations", "", "someone-elses", false},
		{"patch", adm, "validatingwebhookconfigurations", "", "", false},
		{"list", adm, "mutatingwebhookconfigurations", "", "", false},
		{"create", adm, "validatingwebhookconfigurations", "", "", false},
		{"delete", adm, "mutatingwebhookconfigurations", "", "clonegate-mutating", false},
		{"get", core, "pods", "apps", "p", false},
		{"list", core, "configmaps", all, "", false},
		{"create", rbac, "clusterrolebindings", "", "", false},
		{"bind", rbac, "clusterroles", "", "cluster-admin", false},
		{"impersonate", core, "users", "", "admin", false},
		{"create", core, "serviceaccounts/token", ns, "clonegate", false},
	}
	for _, c := range cases {
		resource, sub, _ := strings.Cut(c.resource, "/")
		sar := fmt.Sprintf(`{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{"user":%q,"groups":["system:serviceaccounts","system:serviceaccounts:clonegate-system","system:authenticated"],`+
			`"resourceAttributes":{"verb":%q,"group":%q,"resource":%q,"subresource":%q,"namespace":%q,"name":%q}}}`, sa, c.verb, c.group, resource, sub, c.namespace, c.name)
		r := e.Kubectl(sar, "create", "-f", "-", "-o", "jsonpath={.status.allowed}")
		if r.Code != 0 {
			t.Fatalf("SubjectAccessReview: %s", r.Output())
		}
		if got := r.Stdout == "true"; got != c.want {
			t.Errorf("%s may %s %s/%s in namespace %q name %q: %v, want %v", sa, c.verb, c.group, c.resource, c.namespace, c.name, got, c.want)
		}
	}
}
