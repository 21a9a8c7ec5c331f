package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// Manager keeps the webhook server's certificate: it creates the Secret if
// absent, rotates what is due, injects the CA into both webhook
// configurations, then writes tls.crt and tls.key to CertDir — in that
// order, so a server never presents a certificate the apiserver does not
// trust yet. It runs again whenever the Secret or either configuration
// changes (it watches the three by name), every Interval, and earlier if a
// rotation falls due: replicas converge on the Secret at once, and an
// emptied caBundle (a GitOps tool re-applying the configurations) is
// repaired at once.
//
// A new CA that replaces a deleted or damaged Secret keeps trusting the CAs
// that still parse (from the old Secret and the live caBundle), so replicas
// still serving a certificate of the old CA are never untrusted.
//
// Several replicas may start at once: the Secret is created only if absent
// (the loser of the race reads and uses the winner's) and updated only at the
// resourceVersion it was read at, so nothing is overwritten blindly.
type Manager struct {
	Client     client.WithWatch // uncached: Secret reads need get on one name, watches watch on it
	Namespace  string           // of the Secret
	SecretName string
	Identity   Identity
	Validity   Validity
	CertDir    string
	// MutatingWebhook and ValidatingWebhook name the configurations whose
	// every webhook gets the CA bundle.
	MutatingWebhook, ValidatingWebhook string
	Interval                           time.Duration // default 1 minute
	Now                                func() time.Time

	ready   atomic.Bool
	watcher atomic.Pointer[certwatcher.CertWatcher] // set once the files exist
}

// NewClient is a client for the Manager: no cache, so that reading one
// Secret by name needs only get on that name (and watching it, watch).
func NewClient(cfg *rest.Config) (client.WithWatch, error) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := admissionv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	return client.NewWithWatch(cfg, client.Options{Scheme: scheme})
}

// TLSOption makes a webhook server present the Manager's certificate. The
// server's own watcher would fail at start when the files are not there yet
// (the Manager writes them after the server has started), so the Manager
// runs controller-runtime's certwatcher itself, once the files exist, and
// TLS handshakes fail — and /readyz with them — until then.
func (m *Manager) TLSOption(c *tls.Config) {
	c.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		w := m.watcher.Load()
		if w == nil {
			return nil, errors.New("serving certificate not written yet")
		}
		return w.GetCertificate(hello)
	}
}

// SetupWithManager runs the Manager with mgr and adds its readiness check.
func (m *Manager) SetupWithManager(mgr manager.Manager) error {
	if err := mgr.Add(m); err != nil {
		return err
	}
	return mgr.AddReadyzCheck("certificate", m.ReadyCheck)
}

// ReadyCheck fails until the certificate is on disk and the CA injected.
// Once ready it stays ready: a later failed reconcile (an apiserver blip)
// leaves a valid certificate in place and must not take every replica out.
func (m *Manager) ReadyCheck(*http.Request) error {
	if !m.ready.Load() {
		return errors.New("certificate not yet on disk and CA not yet injected into the webhook configurations")
	}
	return nil
}

// NeedLeaderElection is false: every replica needs its certificate.
func (m *Manager) NeedLeaderElection() bool { return false }

// Start reconciles until ctx ends, retrying failures with backoff. Reconcile
// is only ever called from here, one at a time.
func (m *Manager) Start(ctx context.Context) error {
	log := log.FromContext(ctx).WithName("certs")
	interval := m.Interval
	if interval <= 0 {
		interval = time.Minute
	}
	kick := make(chan struct{}, 1)
	go m.watch(ctx, kick, &corev1.SecretList{}, client.InNamespace(m.Namespace), client.MatchingFields{"metadata.name": m.SecretName})
	go m.watch(ctx, kick, &admissionv1.MutatingWebhookConfigurationList{}, client.MatchingFields{"metadata.name": m.MutatingWebhook})
	go m.watch(ctx, kick, &admissionv1.ValidatingWebhookConfigurationList{}, client.MatchingFields{"metadata.name": m.ValidatingWebhook})
	backoff := time.Second
	for {
		next, err := m.Reconcile(ctx)
		delay := interval
		if err != nil {
			log.Error(err, "certificate not reconciled; retrying", "in", backoff)
			delay, backoff = backoff, min(2*backoff, interval)
		} else {
			backoff = time.Second
			if until := next.Sub(m.now()); until < delay {
				delay = max(until, time.Second)
			}
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-kick:
			t.Stop()
		}
	}
}

// watch kicks the reconcile loop on every change of the objects list and
// opts select (one, by name), re-watching when a watch ends. Watch errors
// (no RBAC for it, say) only log: the Interval still reconciles.
func (m *Manager) watch(ctx context.Context, kick chan<- struct{}, list client.ObjectList, opts ...client.ListOption) {
	log := log.FromContext(ctx).WithName("certs")
	backoff := time.Second
	for ctx.Err() == nil {
		w, err := m.Client.Watch(ctx, list, opts...)
		if err != nil {
			log.Error(err, "cannot watch; relying on the check interval", "kind", fmt.Sprintf("%T", list))
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			backoff = min(2*backoff, time.Minute)
			continue
		}
		backoff = time.Second
		for range w.ResultChan() {
			select {
			case kick <- struct{}{}:
			default: // a reconcile is already due
			}
		}
		w.Stop()
	}
}

// Reconcile runs once: Secret, then caBundle, then files. It returns when
// the bundle next falls due.
func (m *Manager) Reconcile(ctx context.Context) (time.Time, error) {
	b, err := m.ensureSecret(ctx)
	if err != nil {
		return time.Time{}, err
	}
	if err := m.inject(ctx, b.CABundle()); err != nil {
		return time.Time{}, err
	}
	if err := m.writeFiles(ctx, b); err != nil {
		return time.Time{}, err
	}
	m.ready.Store(true)
	return b.NextCheck(), nil
}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *Manager) secretRef() string { return m.Namespace + "/" + m.SecretName }

// ensureSecret returns the bundle the Secret holds, creating or rotating it
// first when needed. A conflict (another replica wrote first) reads again
// and judges what the other replica stored.
func (m *Manager) ensureSecret(ctx context.Context) (*Bundle, error) {
	log := log.FromContext(ctx).WithName("certs")
	var out *Bundle
	retryable := func(err error) bool { return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) }
	err := retry.OnError(retry.DefaultRetry, retryable, func() error {
		secret := &corev1.Secret{}
		err := m.Client.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: m.SecretName}, secret)
		switch {
		case apierrors.IsNotFound(err):
			b, reason, err := Plan(nil, m.Identity, m.Validity, m.now())
			if err != nil {
				return err
			}
			if b, err = Carry(b, m.liveCAs(ctx), m.now()); err != nil {
				return err
			}
			secret = &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: m.Namespace, Name: m.SecretName,
					Labels: map[string]string{"app.kubernetes.io/name": "clonegate", "app.kubernetes.io/component": "webhook-certificate"}},
				Type: corev1.SecretTypeTLS,
				Data: b.Data(),
			}
			if err := m.Client.Create(ctx, secret); err != nil {
				return err
			}
			log.Info("created certificate Secret", "secret", m.secretRef(), "reason", reason, "expires", b.Cert.NotAfter)
			out = b
			return nil
		case err != nil:
			return fmt.Errorf("reading Secret %s: %w (clonegate needs get, create and update on it: see config/rbac)", m.secretRef(), err)
		}
		current, parseErr := ParseBundle(secret.Data)
		b, reason, err := Plan(current, m.Identity, m.Validity, m.now())
		if err != nil {
			return err
		}
		if parseErr != nil {
			reason = "unreadable: " + parseErr.Error()
		}
		if reason == "" {
			out = b
			return nil
		}
		if current == nil || !b.CA.Equal(current.CA) {
			// A new CA: keep trusting what the old Secret and the
			// configurations trusted, which replicas may still serve.
			if b, err = Carry(b, append(ParseCAs(secret.Data[KeyBundle]), m.liveCAs(ctx)...), m.now()); err != nil {
				return err
			}
		}
		// Update at the resourceVersion read: a replica that rotated first
		// wins, and this one retries with what it stored.
		secret.Data = b.Data()
		if err := m.Client.Update(ctx, secret); err != nil {
			return err
		}
		log.Info("rotated certificate", "secret", m.secretRef(), "reason", reason, "expires", b.Cert.NotAfter)
		out = b
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("certificate Secret %s: %w", m.secretRef(), err)
	}
	return out, nil
}

// liveCAs are the CAs the two configurations' caBundles hold now; none when
// they cannot be read (inject will say why).
func (m *Manager) liveCAs(ctx context.Context) []*x509.Certificate {
	var out []*x509.Certificate
	mutating := &admissionv1.MutatingWebhookConfiguration{}
	if m.Client.Get(ctx, client.ObjectKey{Name: m.MutatingWebhook}, mutating) == nil {
		for _, w := range mutating.Webhooks {
			out = append(out, ParseCAs(w.ClientConfig.CABundle)...)
		}
	}
	validating := &admissionv1.ValidatingWebhookConfiguration{}
	if m.Client.Get(ctx, client.ObjectKey{Name: m.ValidatingWebhook}, validating) == nil {
		for _, w := range validating.Webhooks {
			out = append(out, ParseCAs(w.ClientConfig.CABundle)...)
		}
	}
	return out
}

// inject puts the CA bundle into every webhook of both configurations,
// updating only what differs, at the resourceVersion read.
func (m *Manager) inject(ctx context.Context, caBundle []byte) error {
	mutating := &admissionv1.MutatingWebhookConfiguration{}
	if err := m.injectInto(ctx, mutating, "MutatingWebhookConfiguration", m.MutatingWebhook, func() bool {
		changed := false
		for i := range mutating.Webhooks {
			if !bytes.Equal(mutating.Webhooks[i].ClientConfig.CABundle, caBundle) {
				mutating.Webhooks[i].ClientConfig.CABundle, changed = caBundle, true
			}
		}
		return changed
	}); err != nil {
		return err
	}
	validating := &admissionv1.ValidatingWebhookConfiguration{}
	return m.injectInto(ctx, validating, "ValidatingWebhookConfiguration", m.ValidatingWebhook, func() bool {
		changed := false
		for i := range validating.Webhooks {
			if !bytes.Equal(validating.Webhooks[i].ClientConfig.CABundle, caBundle) {
				validating.Webhooks[i].ClientConfig.CABundle, changed = caBundle, true
			}
		}
		return changed
	})
}

func (m *Manager) injectInto(ctx context.Context, obj client.Object, kind, name string, set func() bool) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := m.Client.Get(ctx, client.ObjectKey{Name: name}, obj); err != nil {
			return err
		}
		if !set() {
			return nil
		}
		if err := m.Client.Update(ctx, obj); err != nil {
			return err
		}
		log.FromContext(ctx).WithName("certs").Info("injected CA bundle", "kind", kind, "name", name)
		return nil
	})
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%s %q not found: install the webhook configurations (config/webhook) or name yours with --mutating-webhook-config / --validating-webhook-config", kind, name)
	case err != nil:
		return fmt.Errorf("injecting the CA into %s %q: %w (clonegate needs get and update on it: see config/rbac)", kind, name, err)
	}
	return nil
}

// writeFiles writes tls.crt and tls.key when they differ from the bundle,
// each atomically (a temporary file renamed into place), then has the
// certwatcher read them at once rather than on its next event or poll.
func (m *Manager) writeFiles(ctx context.Context, b *Bundle) error {
	if err := os.MkdirAll(m.CertDir, 0o700); err != nil {
		return fmt.Errorf("cert dir: %w", err)
	}
	certPath, keyPath := filepath.Join(m.CertDir, KeyCert), filepath.Join(m.CertDir, KeyKey)
	changed := false
	// Key first: a reader between the two renames sees a mismatched pair,
	// fails to load it and keeps the certificate it had.
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{keyPath, b.Data()[KeyKey], 0o600}, {certPath, b.Data()[KeyCert], 0o644}} {
		if old, err := os.ReadFile(f.path); err == nil && bytes.Equal(old, f.data) {
			continue
		}
		if err := writeAtomic(f.path, f.data, f.mode); err != nil {
			return fmt.Errorf("writing %s: %w (the cert dir must be writable: mount an emptyDir there)", f.path, err)
		}
		changed = true
	}
	if w := m.watcher.Load(); w != nil {
		if changed {
			return w.ReadCertificate()
		}
		return nil
	}
	// First files: from now on controller-runtime's certwatcher (fsnotify
	// and polling) serves them and follows every change.
	w, err := certwatcher.New(certPath, keyPath)
	if err != nil {
		return fmt.Errorf("loading %s: %w", certPath, err)
	}
	go func() {
		if err := w.Start(ctx); err != nil {
			log.FromContext(ctx).Error(err, "certificate watcher stopped")
		}
	}()
	m.watcher.Store(w)
	return nil
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
