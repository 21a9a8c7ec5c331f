// Command bench is `make bench`: it measures what clonegate costs the
// apiserver, against a null webhook (the floor any webhook pays) and against
// no webhook at all, in one run on one machine, and writes the figures to
// bench/results.json. See the README's Performance section.
//
//  1. direct: AdmissionReviews for a clone posted straight to the validating
//     path by concurrent keep-alive clients, clonegate and the null webhook;
//  2. apiserver: clone and plain claim creates through the real
//     kube-apiserver with no webhook, the null webhook and clonegate
//     registered, in interleaved rounds;
//  3. memory: clonegate's RSS and heap idle and with many claims, and its
//     time to ready with them;
//  4. the handlers' Go benchmarks (ns/op, allocs/op).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/clonegate/clonegate/internal/testenv"
	"github.com/clonegate/clonegate/webhook"
)

type options struct {
	root, bin, out   string
	clients          int
	warmup, duration time.Duration
	rounds, perRound int
	claims           []int
	fillWorkers      int
	goBench          bool
	memoryOnly       bool
	directOnly       bool
}

// Results is bench/results.json.
type Results struct {
	Date    string        `json:"date"`
	Machine string        `json:"machine"`
	Direct  DirectResults `json:"direct"`
	// The same load with the load generator and the webhooks on the same
	// CPUs, for comparison; absent on a single CPU.
	DirectShared *DirectResults  `json:"direct_shared_cpus,omitempty"`
	APIServer    APIServerResult `json:"apiserver"`
	Memory       MemoryResult    `json:"memory"`
	GoBench      []GoBench       `json:"go_benchmarks,omitempty"`
	Targets      []Target        `json:"targets"`
}

// DirectResults are the direct figures for both webhooks.
type DirectResults struct {
	Clients          int          `json:"clients"`
	CPUs             string       `json:"cpus"` // how the load generator and the webhooks shared the CPUs
	Seconds          float64      `json:"seconds"`
	Null             DirectResult `json:"null"`
	Clonegate        DirectResult `json:"clonegate"`
	ThroughputOfNull float64      `json:"throughput_ratio_clonegate_over_null"`
}

// Target is one of the targets and whether this run met it.
type Target struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Limit string  `json:"limit"`
	Met   bool    `json:"met"`
}

// GoBench is one line of `go test -bench` output.
type GoBench struct {
	Name        string  `json:"name"`
	NsPerOp     float64 `json:"ns_per_op"`
	BytesPerOp  float64 `json:"bytes_per_op"`
	AllocsPerOp float64 `json:"allocs_per_op"`
}

func main() {
	var o options
	claims := "20000,50000,200000"
	flag.StringVar(&o.root, "root", ".", "repository root")
	flag.StringVar(&o.bin, "clonegate", "bin/clonegate", "the clonegate binary")
	flag.StringVar(&o.out, "out", "bench/results.json", "where to write the results")
	flag.IntVar(&o.clients, "clients", 8, "direct: concurrent keep-alive clients")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "direct: warm-up before each measurement")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "direct: measured time per webhook")
	flag.IntVar(&o.rounds, "rounds", 10, "apiserver: interleaved rounds")
	flag.IntVar(&o.perRound, "per-round", 50, "apiserver: clone creates (and as many plain creates) per mode and round")
	flag.StringVar(&claims, "claims", claims, "memory: claim counts to measure at, comma-separated")
	flag.IntVar(&o.fillWorkers, "fill-workers", 32, "memory: concurrent creates when filling the cluster")
	flag.BoolVar(&o.goBench, "go-bench", true, "run the handlers' Go benchmarks as well")
	flag.BoolVar(&o.memoryOnly, "memory-only", false, "measure only memory and start to ready (no direct or apiserver load: the baseline is then taken at idle)")
	flag.BoolVar(&o.directOnly, "direct-only", false, "measure only the direct load (null webhook and clonegate), print it, write nothing")
	serveNullCerts := flag.String("serve-null", "", "internal: serve the null webhook with the certificate in this directory")
	flag.Parse()
	if *serveNullCerts != "" {
		fmt.Fprintln(os.Stderr, "bench: null webhook:", serveNull(*serveNullCerts))
		os.Exit(1)
	}
	if o.memoryOnly && !flagSet("out") {
		o.out = "" // a partial run does not replace the committed results
	}
	for _, s := range strings.Split(claims, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: -claims:", err)
			os.Exit(2)
		}
		o.claims = append(o.claims, n)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// flagSet reports whether the named flag was given.
func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, ">> "+format+"\n", args...)
}

func run(ctx context.Context, o options) (err error) {
	started := time.Now()
	res := Results{Date: started.UTC().Format(time.RFC3339), Machine: machine()}

	logf("starting etcd and kube-apiserver with config/webhook registered")
	cluster, err := testenv.Start(testenv.Options{Root: o.root,
		CRDPaths: []string{filepath.Join(o.root, "test", "e2e", "testdata", "crds")}}) // restores: the snapshot API
	if err != nil {
		return err
	}
	defer cluster.Stop()
	c, err := fastClient(cluster.Env.Config)
	if err != nil {
		return err
	}
	if err := createFixtures(ctx, c); err != nil {
		return fmt.Errorf("fixtures: %w", err)
	}
	w := cluster.Env.WebhookInstallOptions
	null, err := startNullWebhook(w.LocalServingCertDir)
	if err != nil {
		return err
	}
	defer null.Close()
	review, err := cloneReview()
	if err != nil {
		return err
	}
	r := newReviewer(w.LocalServingCAData, review, o.clients)
	clonegateURL := fmt.Sprintf("https://%s:%d%s", w.LocalServingHost, w.LocalServingPort, webhook.ValidatePath)
	nullURL := null.URL + webhook.ValidatePath

	logf("starting clonegate serve")
	server, err := cluster.StartServer(ctx, o.bin, "--log-level", "info")
	if err != nil {
		return err
	}
	defer func() { _ = server.Stop() }()

	// 3a. idle: before anything else has run.
	base, err := countClaims(ctx, c)
	if err != nil {
		return err
	}
	idle, err := measure(ctx, server, r, clonegateURL, base)
	if err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	res.Memory.Points = append(res.Memory.Points, idle)

	if !o.memoryOnly {
		// 1. direct: on split CPUs (the target), then on shared ones.
		logf("direct: the null webhook and clonegate, %d clients, %s each in %d alternating stretches", o.clients, o.duration, directSlices)
		urls, hooks := []string{nullURL, clonegateURL}, []int{null.cmd.Process.Pid, server.Cmd.Process.Pid}
		split, ok := newCPUSplit()
		if ok {
			if err := split.apply(hooks...); err != nil {
				logf("direct: the CPUs stay shared: %v", err)
				_ = split.undo(hooks...)
				ok = false
			}
		}
		res.Direct = r.direct(ctx, urls, o)
		if ok {
			res.Direct.CPUs = split.String()
			if err := split.undo(hooks...); err != nil {
				return err
			}
			logf("direct: again, with the CPUs shared")
			shared := r.direct(ctx, urls, o)
			res.DirectShared = &shared
		}
		if o.directOnly {
			printDirects(os.Stdout, res)
			return nil
		}

		// 2. apiserver.
		logf("apiserver: %d rounds of %d clone and %d plain creates per mode (none, null, clonegate)", o.rounds, o.perRound, o.perRound)
		reg, err := captureRegistrations(ctx, c, null.URL)
		if err != nil {
			return err
		}
		if res.APIServer, err = createRounds(ctx, c, reg, o.rounds, o.perRound); err != nil {
			return fmt.Errorf("apiserver: %w", err)
		}
	}

	// 3b. memory with many claims, per claim above a baseline taken now:
	// after the load above, whose connections and buffers are no claim's.
	if base, err = countClaims(ctx, c); err != nil {
		return err
	}
	baseline, err := measure(ctx, server, r, clonegateURL, base)
	if err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	res.Memory.Baseline = baseline
	for _, n := range o.claims {
		logf("memory: filling the cluster to %d claims", n)
		t := time.Now()
		created, err := fill(ctx, c, n, o.fillWorkers)
		if err != nil {
			return fmt.Errorf("memory: %w", err)
		}
		res.Memory.CreateRate = float64(created) / time.Since(t).Seconds()
		p, err := measure(ctx, server, r, clonegateURL, n)
		if err != nil {
			return fmt.Errorf("memory: %w", err)
		}
		p.RSSBytesPerClaim = (p.rss - baseline.rss) / float64(p.Claims-baseline.Claims)
		p.HeapLiveBytesPerClaim = (p.l - baseline.l) / float64(p.Claims-baseline.Claims)
		if n >= readyFrom {
			// A fresh process with n claims in the cluster: start to ready.
			logf("memory: restarting clonegate with %d claims in the cluster", n)
			if err := server.Stop(); err != nil {
				return fmt.Errorf("clonegate exited badly on SIGTERM: %w\n%s", err, server.Log)
			}
			t := time.Now()
			if server, err = cluster.StartServer(ctx, o.bin, "--log-level", "info"); err != nil {
				return err
			}
			p.ReadySeconds = time.Since(t).Seconds()
			if res.Memory.Restarted, err = measure(ctx, server, r, clonegateURL, n); err != nil {
				return fmt.Errorf("memory: %w", err)
			}
			// The fresh process's peak, while it listed the claims.
			peak, err := server.PeakRSS()
			if err != nil {
				return fmt.Errorf("memory: %w", err)
			}
			p.StartPeakRSSMiB = mib(float64(peak))
		}
		res.Memory.Points = append(res.Memory.Points, p)
	}
	last := res.Memory.Points[len(res.Memory.Points)-1]
	res.Memory.RSSBytesPerClaim, res.Memory.HeapLiveBytesPerClaim, res.Memory.ReadySeconds = last.RSSBytesPerClaim, last.HeapLiveBytesPerClaim, last.ReadySeconds

	// 4. Go benchmarks.
	if o.goBench && !o.memoryOnly {
		logf("go benchmarks of the handlers")
		if res.GoBench, err = goBenchmarks(ctx, o.root); err != nil {
			return err
		}
	}

	res.Targets = targets(res)
	if o.memoryOnly {
		res.Targets = slices.DeleteFunc(res.Targets, func(t Target) bool { return !isMemory(t) })
	}
	printTable(os.Stdout, res, !o.memoryOnly)
	fmt.Printf("\n(bench took %s)\n", time.Since(started).Round(time.Second))
	if o.out == "" {
		return nil
	}
	return writeJSON(o.out, res)
}

// fastClient is a client without client-side rate limits, to fill the
// cluster quickly.
func fastClient(cfg *rest.Config) (client.Client, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 5000, 10000
	scheme := k8sruntime.NewScheme()
	for _, add := range []func(*k8sruntime.Scheme) error{corev1.AddToScheme, storagev1.AddToScheme, admissionregistrationv1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	return client.New(cfg, client.Options{Scheme: scheme})
}

// readyFrom is the claim count from which the bench restarts clonegate to
// time its start to ready.
const readyFrom = 50000

func targets(r Results) []Target {
	d, a, m := r.Direct, r.APIServer, r.Memory
	idle := m.Points[0]
	var memory []Target
	for _, p := range m.Points[1:] {
		if p.Claims <= 50000 {
			memory = append(memory, Target{Name: fmt.Sprintf("RSS bytes per cached claim at %d", p.Claims), Value: p.RSSBytesPerClaim, Limit: "<= 250", Met: p.RSSBytesPerClaim <= 250})
		}
		switch {
		case p.ReadySeconds == 0:
		case p.Claims <= 50000:
			memory = append(memory, Target{Name: fmt.Sprintf("ready seconds at %d", p.Claims), Value: p.ReadySeconds, Limit: "<= 3", Met: p.ReadySeconds <= 3})
		default:
			memory = append(memory, Target{Name: fmt.Sprintf("ready seconds at %d", p.Claims), Value: p.ReadySeconds, Limit: "<= 5", Met: p.ReadySeconds <= 5})
		}
	}
	var allocs float64
	for _, b := range r.GoBench {
		allocs = max(allocs, b.AllocsPerOp)
	}
	restore := a.Ratios["restore_p50_over_clone_p50_clonegate"]
	return append([]Target{
		{Name: "direct throughput, clonegate / null", Value: d.ThroughputOfNull, Limit: ">= 0.60", Met: d.ThroughputOfNull >= 0.60},
		{Name: "direct p99 ms, clonegate", Value: d.Clonegate.P99Ms, Limit: "<= 2", Met: d.Clonegate.P99Ms <= 2},
		{Name: "direct errors", Value: float64(d.Clonegate.Errors + d.Null.Errors), Limit: "== 0", Met: d.Clonegate.Errors+d.Null.Errors == 0},
		{Name: "apiserver clone p50, clonegate / null", Value: a.Ratios["clone_p50_clonegate_over_null"], Limit: "<= 1.05", Met: a.Ratios["clone_p50_clonegate_over_null"] <= 1.05},
		{Name: "apiserver plain p50, clonegate / none", Value: a.Ratios["plain_p50_clonegate_over_none"], Limit: "<= 1.05 (not slower, within noise)", Met: a.Ratios["plain_p50_clonegate_over_none"] <= 1.05},
		{Name: "apiserver restore p50 / clone p50, clonegate", Value: restore, Limit: "<= 1.10", Met: restore <= 1.10},
		{Name: "idle RSS MiB", Value: idle.RSSMiB, Limit: "<= 40", Met: idle.RSSMiB <= 40},
		{Name: "handler allocs per review (most of any webhook)", Value: allocs, Limit: "<= 30", Met: allocs <= 30 && len(r.GoBench) > 0},
	}, memory...)
}

// isMemory reports whether t is a memory or start-up target.
func isMemory(t Target) bool {
	return strings.Contains(t.Name, "RSS") || strings.HasPrefix(t.Name, "ready")
}

func printTable(out io.Writer, r Results, load bool) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(cols ...any) {
		for _, c := range cols {
			switch c := c.(type) {
			case float64:
				fmt.Fprintf(tw, "%.2f\t", c)
			default:
				fmt.Fprintf(tw, "%v\t", c)
			}
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprintf(out, "\nclonegate bench — %s, %s\n", r.Machine, r.Date)
	if load {
		printLoad(out, tw, row, r)
	}

	m := r.Memory
	fmt.Fprintf(out, "\n3. memory of clonegate serve (after two GCs)\n")
	row("claims", "RSS MiB", "heap in use MiB", "live heap MiB", "RSS B/claim", "live heap B/claim", "ready s", "peak RSS MiB while starting")
	for _, p := range m.Points {
		row(p.Claims, p.RSSMiB, p.HeapInuseMiB, p.HeapLiveMiB, p.RSSBytesPerClaim, p.HeapLiveBytesPerClaim, p.ReadySeconds, p.StartPeakRSSMiB)
	}
	row(fmt.Sprintf("%d after load (baseline)", m.Baseline.Claims), m.Baseline.RSSMiB, m.Baseline.HeapInuseMiB, m.Baseline.HeapLiveMiB, "", "", "", "")
	row(fmt.Sprintf("%d restarted", m.Restarted.Claims), m.Restarted.RSSMiB, m.Restarted.HeapInuseMiB, m.Restarted.HeapLiveMiB, "", "", "", "")
	tw.Flush()

	if len(r.GoBench) > 0 {
		fmt.Fprintf(out, "\n4. handler benchmarks (package webhook)\n")
		row("benchmark", "ns/op", "B/op", "allocs/op")
		for _, b := range r.GoBench {
			row(b.Name, b.NsPerOp, b.BytesPerOp, b.AllocsPerOp)
		}
		tw.Flush()
	}

	fmt.Fprintf(out, "\ntargets\n")
	for _, t := range r.Targets {
		verdict := "met"
		if !t.Met {
			verdict = "MISSED"
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%s\t%s\t\n", t.Name, t.Value, t.Limit, verdict)
	}
	tw.Flush()
}

// printLoad prints the direct and apiserver figures.
func printLoad(out io.Writer, tw *tabwriter.Writer, row func(...any), r Results) {
	printDirects(out, r)
	a := r.APIServer
	fmt.Fprintf(out, "\n2. apiserver: creates through kube-apiserver, %d interleaved rounds\n", a.Rounds)
	row("registered", "clone p50 ms", "clone p99 ms", "restore p50 ms", "restore p99 ms", "plain p50 ms", "plain p99 ms", "n")
	for _, m := range modes {
		row(string(m), a.Clone[m].P50Ms, a.Clone[m].P99Ms, a.Restore[m].P50Ms, a.Restore[m].P99Ms, a.Plain[m].P50Ms, a.Plain[m].P99Ms, a.Clone[m].N)
	}
	row("clonegate/none", a.Ratios["clone_p50_clonegate_over_none"], "", "", "", a.Ratios["plain_p50_clonegate_over_none"], "", "")
	row("clonegate/null", a.Ratios["clone_p50_clonegate_over_null"], "", a.Ratios["restore_p50_clonegate_over_null"], "", a.Ratios["plain_p50_clonegate_over_null"], "", "")
	row("restore/clone", "", "", a.Ratios["restore_p50_over_clone_p50_clonegate"], "", "", "", "")
	tw.Flush()
}

// direct measures the null webhook (urls[0]) and clonegate (urls[1]) under
// the direct load, on the CPUs as they are set.
func (r *reviewer) direct(ctx context.Context, urls []string, o options) DirectResults {
	d := DirectResults{Clients: o.clients, Seconds: o.duration.Seconds(), CPUs: "load generator and webhooks on shared CPUs"}
	got := r.load(ctx, urls, o.clients, o.warmup, o.duration)
	d.Null, d.Clonegate = got[0], got[1]
	d.ThroughputOfNull = d.Clonegate.ReqPerSec / d.Null.ReqPerSec
	return d
}

// printDirects prints the direct figures, on split CPUs and shared ones.
func printDirects(out io.Writer, r Results) {
	printDirect(out, "1. direct", r.Direct)
	if r.DirectShared != nil {
		printDirect(out, "1b. direct, for comparison (not a target)", *r.DirectShared)
	}
}

// printDirect prints the direct figures under title.
func printDirect(out io.Writer, title string, d DirectResults) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(out, "\n%s: validating reviews of a clone, %d keep-alive clients, %.0fs, TLS 1.3, HTTP/1.1; %s\n", title, d.Clients, d.Seconds, d.CPUs)
	fmt.Fprintln(tw, "webhook\treq/s\tp50 ms\tp99 ms\trequests\terrors\t")
	for _, x := range []struct {
		name string
		d    DirectResult
	}{{"null", d.Null}, {"clonegate", d.Clonegate}} {
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t%d\t%d\t\n", x.name, x.d.ReqPerSec, x.d.P50Ms, x.d.P99Ms, x.d.Requests, x.d.Errors)
	}
	fmt.Fprintf(tw, "clonegate/null\t%.2f\t\t\t\t\t\n", d.ThroughputOfNull)
	tw.Flush()
}

func writeJSON(path string, r Results) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// goBenchmarks runs the handlers' benchmarks once, briefly.
func goBenchmarks(ctx context.Context, root string) ([]GoBench, error) {
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", ".", "-benchmem", "-benchtime", "20000x", "./webhook/")
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go test -bench: %w\n%s", err, out.String())
	}
	var res []GoBench
	s := bufio.NewScanner(&out)
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) < 8 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		b := GoBench{Name: f[0]}
		for i := 2; i+1 < len(f); i += 2 {
			v, _ := strconv.ParseFloat(f[i], 64)
			switch f[i+1] {
			case "ns/op":
				b.NsPerOp = v
			case "B/op":
				b.BytesPerOp = v
			case "allocs/op":
				b.AllocsPerOp = v
			}
		}
		res = append(res, b)
	}
	return res, nil
}

func machine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%d CPUs, %s, %s", runtime.NumCPU(), model, runtime.Version())
}
