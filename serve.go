package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap/zapcore"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/clonegate/clonegate/webhook"
	"github.com/clonegate/clonegate/webhook/rules"
)

type serveOptions struct {
	certDir       string
	host          string
	port          int
	probeAddr     string
	metricsAddr   string
	enableHTTP2   bool
	tlsMinVersion string
	clientCAFile  string
	policyFile    string
	missingSource string
	shutdownDelay time.Duration
	logLevel      string
	logFormat     string
	certs         certOptions
}

func (o *serveOptions) bind(fs *pflag.FlagSet) {
	fs.StringVar(&o.certDir, "cert-dir", "/tmp/k8s-webhook-server/serving-certs", "directory holding the serving certificate, tls.crt and tls.key; reloaded when they change")
	fs.StringVar(&o.host, "host", "", "address the webhook server listens on (all when empty)")
	fs.IntVar(&o.port, "port", 9443, "port the webhook server listens on")
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz (0 to disable)")
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", "0", "address of the Prometheus /metrics endpoint (0 to disable)")
	fs.BoolVar(&o.enableHTTP2, "enable-http2", false, "serve webhooks over HTTP/2 as well (off: HTTP/2 rapid-reset and stream attacks)")
	fs.StringVar(&o.tlsMinVersion, "tls-min-version", "1.3", "minimum TLS version: 1.2 or 1.3")
	fs.StringVar(&o.clientCAFile, "client-ca-file", "", "PEM bundle of CAs; when set, only clients with a certificate they signed (the apiserver, configured through its AdmissionConfiguration) may connect")
	fs.StringVar(&o.policyFile, "policy", "", "policy file (YAML) setting each rule to deny, warn or off; see README")
	fs.StringVar(&o.missingSource, "missing-source", "", "what to do with a clone whose source does not exist: warn (default) or deny; overrides the policy file")
	fs.DurationVar(&o.shutdownDelay, "shutdown-delay", 5*time.Second, "on SIGTERM, how long to report not-ready before closing the listener, so endpoints drain")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: info, debug, or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	o.certs.bind(fs)
}

// loadPolicy reads the policy file (if any) and applies flag overrides.
func (o *serveOptions) loadPolicy() (*rules.Policy, error) {
	policy := &rules.Policy{}
	if o.policyFile != "" {
		var err error
		if policy, err = rules.LoadPolicy(o.policyFile); err != nil {
			return nil, err
		}
	}
	switch a := rules.Action(o.missingSource); a {
	case "":
	case rules.Warn, rules.Deny:
		if policy.Rules == nil {
			policy.Rules = map[rules.Rule]rules.Action{}
		}
		policy.Rules[rules.RuleMissingSource] = a
	default:
		return nil, fmt.Errorf("--missing-source=%q: must be warn or deny", o.missingSource)
	}
	return policy, nil
}

func (o *serveOptions) tlsOptions() ([]func(*tls.Config), error) {
	var min uint16
	switch o.tlsMinVersion {
	case "1.2":
		min = tls.VersionTLS12
	case "1.3":
		min = tls.VersionTLS13
	default:
		return nil, fmt.Errorf("--tls-min-version=%q: must be 1.2 or 1.3", o.tlsMinVersion)
	}
	opts := []func(*tls.Config){func(c *tls.Config) { c.MinVersion = min }}
	if !o.enableHTTP2 {
		opts = append(opts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	if o.clientCAFile != "" {
		pem, err := os.ReadFile(o.clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("--client-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--client-ca-file=%s: no PEM certificate in it", o.clientCAFile)
		}
		opts = append(opts, func(c *tls.Config) {
			c.ClientCAs = pool
			c.ClientAuth = tls.RequireAndVerifyClientCert
		})
	}
	return opts, nil
}

func (o *serveOptions) logger() (zap.Opts, error) {
	var level zapcore.Level
	switch o.logLevel {
	case "debug":
		level = zapcore.DebugLevel
	case "info":
		level = zapcore.InfoLevel
	case "error":
		level = zapcore.ErrorLevel
	default:
		return nil, fmt.Errorf("--log-level=%q: must be info, debug or error", o.logLevel)
	}
	if o.logFormat != "text" && o.logFormat != "json" {
		return nil, fmt.Errorf("--log-format=%q: must be text or json", o.logFormat)
	}
	return func(z *zap.Options) {
		z.Development = o.logFormat == "text"
		z.Level = level
	}, nil
}

func newServeCommand() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve [flags]",
		Short: "Serve the admission webhooks",
		Long: `Serves the mutating and validating webhooks for PersistentVolumeClaims (and
the StatefulSet and Pod template webhooks) over TLS, with /healthz, /readyz
and, when enabled, Prometheus /metrics. The cluster is found as kubectl finds
it: KUBECONFIG, or the service account when running in a pod.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(signalContext()) },
	}
	o.bind(cmd.Flags())
	return cmd
}

// signalContext is cancelled on SIGTERM or SIGINT; a second signal exits at once.
func signalContext() (ctx context.Context) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-ch
		cancel()
		<-ch
		os.Exit(1)
	}()
	return ctx
}

// defaultGCPercent is the GOGC clonegate serve runs with unless GOGC is set:
// its live heap is small (the claim index) and its garbage short-lived
// (reviews, watch events), so a lower target costs little CPU and keeps
// the RSS a memory limit sees near the live heap.
const defaultGCPercent = 50

func (o *serveOptions) run(stop context.Context) error {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	zapOpts, err := o.logger()
	if err != nil {
		return err
	}
	policy, err := o.loadPolicy()
	if err != nil {
		return err
	}
	tlsOpts, err := o.tlsOptions()
	if err != nil {
		return err
	}
	// Before the logger is set: controller-runtime logs a failure to find
	// the cluster with a stack trace, and the error below says it all.
	cfg, err := clusterConfig()
	if err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zapOpts, zap.WriteTo(os.Stderr)))
	log := ctrl.Log.WithName("serve")
	certTLS, addCerts, err := o.certs.setup(cfg, o.certDir)
	if err != nil {
		return err
	}
	tlsOpts = append(tlsOpts, certTLS...)
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, storagev1.AddToScheme, authorizationv1.AddToScheme, appsv1.AddToScheme} {
		if err := add(scheme); err != nil {
			return err
		}
	}
	// Metrics uncompressed: a scrape is tens of KB, and the gzip writer
	// promhttp would pool between scrapes holds 800 KB of heap.
	uncompressed := func(h *promhttp.HandlerOpts) { h.DisableCompression = true }
	mgr, err := ctrl.NewManager(cfg, manager.Options{
		Scheme:                  scheme,
		Cache:                   webhook.CacheOptions(),
		WebhookServer:           ctrlwebhook.NewServer(ctrlwebhook.Options{Host: o.host, Port: o.port, CertDir: o.certDir, TLSOpts: tlsOpts}),
		Metrics:                 metricsserver.Options{BindAddress: o.metricsAddr, HandlerOpts: []func(*promhttp.HandlerOpts){uncompressed}},
		HealthProbeBindAddress:  o.probeAddr,
		GracefulShutdownTimeout: ptr(30 * time.Second),
	})
	if err != nil {
		return err
	}
	if err := addCerts(mgr); err != nil {
		return err
	}
	// GetWebhookServer also adds the server to the manager's runnables.
	server := mgr.GetWebhookServer()

	// Start the volume and class informers with the manager, so /readyz
	// waits for them and no review pays for starting one.
	volumes, err := webhook.InformerStore(stop, mgr.GetCache(), &corev1.PersistentVolume{})
	if err != nil {
		return err
	}
	classes, err := webhook.InformerStore(stop, mgr.GetCache(), &storagev1.StorageClass{})
	if err != nil {
		return err
	}

	m := webhook.NewMetrics(metrics.Registry)
	// Source claims come from a compact index rather than the cache: a
	// cluster's claims are many, and clonegate reads a handful of fields.
	claims := webhook.NewClaimIndex()
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error { return claims.Run(ctx, cfg) })); err != nil {
		return err
	}
	// Every live read of a review goes through one limit, so that no review,
	// and no flood of them, turns into a flood of apiserver requests.
	live := webhook.NewLimitedReader(mgr.GetAPIReader(), webhook.MaxLiveReadsInFlight)
	// Snapshots, their contents and populators: informers started once
	// their APIs are served (CRDs may come later than clonegate).
	sources, err := webhook.NewSourceInformers(cfg)
	if err != nil {
		return err
	}
	if err := mgr.Add(manager.RunnableFunc(sources.Run)); err != nil {
		return err
	}
	lookup := &webhook.SourceLookup{Sources: sources, Volumes: volumes, Classes: classes, Live: live, Claims: claims, Mapper: mgr.GetRESTMapper()}
	grants := &webhook.GrantLookup{Live: live, Client: mgr.GetClient(), Mapper: mgr.GetRESTMapper()}
	// The tests build these very handlers (webhook.NewHandlers) to fuzz them.
	hooks := webhook.NewHandlers(webhook.Config{Policy: policy, Facts: lookup, Metrics: m, Grants: grants})
	server.Register(webhook.MutatePath, hooks.Mutate)
	server.Register(webhook.ValidatePath, hooks.Validate)
	// Workloads' claim templates get the same checks at the workload's CREATE,
	// so the person applying it hears them, not a controller.
	server.Register(webhook.ValidateStatefulSetPath, hooks.StatefulSet)
	server.Register(webhook.ValidatePodPath, hooks.Pod)

	var stopping atomic.Bool
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("webhook", server.StartedChecker()); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("cache", func(req *http.Request) error {
		if stopping.Load() {
			return errors.New("shutting down")
		}
		ctx, cancel := context.WithTimeout(req.Context(), 100*time.Millisecond)
		defer cancel()
		if !claims.HasSynced() {
			return errors.New("claim index not synced yet")
		}
		if !sources.HasSynced() {
			return errors.New("snapshot and populator informers not synced yet")
		}
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			return errors.New("source cache not synced yet")
		}
		return nil
	}); err != nil {
		return err
	}

	// On SIGTERM: report not-ready first, keep serving while endpoints drain,
	// then stop the manager, which lets in-flight reviews finish.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-stop.Done()
		stopping.Store(true)
		log.Info("shutting down: not ready, draining", "delay", o.shutdownDelay)
		time.Sleep(o.shutdownDelay)
		cancel()
	}()
	if policy.CrossNamespace.AllowWithReferenceGrant && o.clientCAFile == "" {
		// A review names its requester, and one sent straight to the port
		// can name anyone: the access check is only as good as the caller.
		log.Info("WARNING: crossNamespace.allowWithReferenceGrant trusts the user a review names; without --client-ca-file, anything that reaches the webhook port can name any user: narrow the NetworkPolicy to the apiserver (docs/hardening.md)")
	}
	log.Info("serving", "version", version, "port", o.port, "certDir", o.certDir, "certMode", o.certs.mode)
	return mgr.Start(ctx)
}

// clusterConfig finds the cluster as controller-runtime does (KUBECONFIG,
// in-cluster, ~/.kube/config), with an error that says what to do.
func clusterConfig() (*rest.Config, error) {
	cfg, err := ctrl.GetConfig()
	switch {
	case err == nil:
		return cfg, nil
	case clientcmd.IsEmptyConfig(err) && os.Getenv(clientcmd.RecommendedConfigPathEnvVar) != "":
		return nil, fmt.Errorf("no cluster to talk to: KUBECONFIG=%s holds no cluster; point it at a kubeconfig file, or run clonegate serve in a pod, where it uses its service account", os.Getenv(clientcmd.RecommendedConfigPathEnvVar))
	case clientcmd.IsEmptyConfig(err):
		return nil, errors.New("no cluster to talk to: set KUBECONFIG to a kubeconfig file (or create ~/.kube/config), or run clonegate serve in a pod, where it uses its service account")
	}
	return nil, fmt.Errorf("no cluster to talk to: %w", err)
}

func ptr[T any](v T) *T { return &v }
