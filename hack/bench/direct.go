package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// probePrefix marks the probe requests the bench sends to learn which
// registration the apiserver applies; the null webhook denies them.
const probePrefix = "probe-"

// nullWebhook is the floor: a TLS server that decodes the review and echoes
// its uid with allowed: true. It does nothing else (bar denying probes by
// request name, a string compare), so any webhook costs at least this much.
type nullWebhook struct {
	URL string // https://127.0.0.1:port
	cmd *exec.Cmd
}

// startNullWebhook runs the null webhook as a process of its own (this
// binary, with -serve-null), as clonegate is one: served from inside the
// load generator's process, it would answer without the cross-process
// wake-ups every real webhook pays, and the floor would be set too low.
func startNullWebhook(certDir string) (*nullWebhook, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-serve-null", certDir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	url, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("the null webhook did not start: %w", err)
	}
	return &nullWebhook{URL: strings.TrimSpace(url), cmd: cmd}, nil
}

func (n *nullWebhook) Close() {
	_ = n.cmd.Process.Kill()
	_ = n.cmd.Wait()
}

// serveNull is the null webhook's process: it prints its URL, then answers
// until killed.
func serveNull(certDir string) error {
	cert, err := tls.LoadX509KeyPair(filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key"))
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(serveNullReview),
		// The same TLS settings clonegate serves with: TLS 1.3, HTTP/1.1 only.
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13, NextProtos: []string{"http/1.1"}},
		ReadHeaderTimeout: 10 * time.Second,
	}
	fmt.Println("https://" + l.Addr().String())
	return srv.ServeTLS(l, "", "")
}

func serveNullReview(w http.ResponseWriter, r *http.Request) {
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
		http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
		return
	}
	resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
	if strings.HasPrefix(review.Request.Name, probePrefix) {
		resp.Allowed = false
		resp.Result = &metav1.Status{Code: http.StatusForbidden, Message: "denied by the null webhook"}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp})
}

// reviewer posts AdmissionReviews over HTTPS keep-alive, as the apiserver does.
type reviewer struct {
	client *http.Client
	prefix []byte // the review up to its uid
	suffix []byte // and after it
}

func newReviewer(caPEM []byte, review []byte, conns int) *reviewer {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13, NextProtos: []string{"http/1.1"}},
		ForceAttemptHTTP2:   false,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     time.Minute,
	}
	const uidMark = "00000000-0000-0000-0000-000000000000"
	i := bytes.Index(review, []byte(uidMark))
	return &reviewer{client: &http.Client{Transport: tr, Timeout: 10 * time.Second}, prefix: review[:i], suffix: review[i+len(uidMark):]}
}

type reviewResult struct {
	Response struct {
		UID     string `json:"uid"`
		Allowed bool   `json:"allowed"`
	} `json:"response"`
}

// post sends one review with a fresh uid and checks that the answer echoes
// it and allows the claim.
func (r *reviewer) post(url string, worker, seq int, buf *bytes.Buffer) error {
	uid := fmt.Sprintf("%08x-0000-4000-8000-%012x", worker, seq)
	buf.Reset()
	buf.Write(r.prefix)
	buf.WriteString(uid)
	buf.Write(r.suffix)
	resp, err := r.client.Post(url, "application/json", bytes.NewReader(buf.Bytes()))
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
	}
	var res reviewResult
	if err := json.Unmarshal(body, &res); err != nil {
		return err
	}
	if res.Response.UID != uid || !res.Response.Allowed {
		return fmt.Errorf("unexpected answer: %s", body)
	}
	return nil
}

// DirectResult is one target's figures under load.
type DirectResult struct {
	Requests  int     `json:"requests"`
	Errors    int     `json:"errors"`
	ReqPerSec float64 `json:"req_per_sec"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	FirstErr  string  `json:"first_error,omitempty"`
}

// slice is what one target answered in one stretch of load.
type slice struct {
	lat      []time.Duration
	elapsed  time.Duration
	errs     int
	firstErr string
}

// run keeps clients concurrent keep-alive clients posting to url for d.
func (r *reviewer) run(ctx context.Context, url string, clients int, d time.Duration) slice {
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		out slice
	)
	start := time.Now()
	deadline := start.Add(d)
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1<<14)
			var buf bytes.Buffer
			nerr, ferr := 0, ""
			for seq := 0; time.Now().Before(deadline) && ctx.Err() == nil; seq++ {
				t := time.Now()
				err := r.post(url, w, seq, &buf)
				lat = append(lat, time.Since(t))
				if err != nil {
					nerr++
					if ferr == "" {
						ferr = err.Error()
					}
				}
			}
			mu.Lock()
			out.lat = append(out.lat, lat...)
			out.errs += nerr
			if out.firstErr == "" {
				out.firstErr = ferr
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	out.elapsed = time.Since(start)
	return out
}

// directSlices is how many alternating stretches the direct measurement is
// cut into: the targets take turns, so that a change in the shared
// machine's load falls on each alike rather than on whichever ran second.
const directSlices = 10

// load measures each url under clients concurrent keep-alive clients for d
// in all, after a warm-up that is not counted; the urls take turns in
// directSlices stretches.
func (r *reviewer) load(ctx context.Context, urls []string, clients int, warmup, d time.Duration) []DirectResult {
	// The load generator's own garbage collection, rarer: its pauses would
	// be timed as the webhooks' latency. Its heap grows by some tens of MB.
	defer debug.SetGCPercent(debug.SetGCPercent(1000))
	for _, url := range urls {
		r.run(ctx, url, clients, warmup)
	}
	all := make([]slice, len(urls))
	for range directSlices {
		for i, url := range urls {
			s := r.run(ctx, url, clients, d/directSlices)
			all[i].lat = append(all[i].lat, s.lat...)
			all[i].elapsed += s.elapsed
			all[i].errs += s.errs
			if all[i].firstErr == "" {
				all[i].firstErr = s.firstErr
			}
		}
	}
	out := make([]DirectResult, len(urls))
	for i, s := range all {
		slices.Sort(s.lat)
		out[i] = DirectResult{
			Requests:  len(s.lat),
			Errors:    s.errs,
			ReqPerSec: float64(len(s.lat)) / s.elapsed.Seconds(),
			P50Ms:     ms(percentile(s.lat, 0.50)),
			P99Ms:     ms(percentile(s.lat, 0.99)),
			FirstErr:  s.firstErr,
		}
	}
	return out
}

// percentile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
