package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/clonegate/clonegate/internal/testenv"
)

// MemoryPoint is clonegate's memory with some number of claims in the cluster.
type MemoryPoint struct {
	Claims       int     `json:"claims"`
	RSSMiB       float64 `json:"rss_mib"`
	HeapInuseMiB float64 `json:"heap_inuse_mib"`
	HeapLiveMiB  float64 `json:"heap_live_mib"` // marked live by the last GC
	// Per claim above idle, and a fresh process's start to ready (from
	// readyFrom claims on).
	RSSBytesPerClaim      float64 `json:"rss_bytes_per_claim,omitempty"`
	HeapLiveBytesPerClaim float64 `json:"heap_live_bytes_per_claim,omitempty"`
	ReadySeconds          float64 `json:"ready_seconds,omitempty"`
	StartPeakRSSMiB       float64 `json:"start_peak_rss_mib,omitempty"` // that fresh process's peak RSS
	rss, inuse, l         float64
}

// MemoryResult is the memory figures.
type MemoryResult struct {
	Points []MemoryPoint `json:"points"`
	// After the direct and apiserver load, before filling: the per-claim
	// figures are above it.
	Baseline MemoryPoint `json:"baseline"`
	// Per claim above idle, at the largest point.
	RSSBytesPerClaim      float64 `json:"rss_bytes_per_claim"`
	HeapLiveBytesPerClaim float64 `json:"heap_live_bytes_per_claim"`
	// A fresh process at the largest point: start to /readyz, and its memory.
	ReadySeconds float64     `json:"ready_seconds"`
	Restarted    MemoryPoint `json:"restarted"`
	CreateRate   float64     `json:"creates_per_sec"` // how fast the bench filled the cluster
}

// scrape reads the named metrics (unlabelled samples) from a Prometheus
// text endpoint.
func scrape(addr string, names ...string) (map[string]float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	s := bufio.NewScanner(resp.Body)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		line := s.Bytes()
		for _, n := range names {
			if bytes.HasPrefix(line, []byte(n+" ")) {
				v, err := strconv.ParseFloat(string(line[len(n)+1:]), 64)
				if err != nil {
					return nil, err
				}
				out[n] = v
			}
		}
	}
	for _, n := range names {
		if _, ok := out[n]; !ok {
			return nil, fmt.Errorf("metric %s not served by clonegate at %s", n, addr)
		}
	}
	return out, s.Err()
}

const (
	gcCycles  = "go_gc_cycles_total_gc_cycles_total"
	heapLive  = "go_gc_heap_live_bytes"
	heapInuse = "go_memstats_heap_inuse_bytes"
)

// measure drives clonegate through two garbage collections (by sending it
// reviews, which is all it does) and then reads its memory: the live heap
// is then what the cache and the server hold, not garbage.
func measure(ctx context.Context, s *testenv.Server, r *reviewer, url string, claims int) (MemoryPoint, error) {
	m, err := scrape(s.MetricsAddr, gcCycles)
	if err != nil {
		return MemoryPoint{}, err
	}
	start := m[gcCycles]
	var buf bytes.Buffer
	deadline := time.Now().Add(60 * time.Second)
	for seq := 0; ; seq++ {
		if seq%100 == 0 {
			if m, err = scrape(s.MetricsAddr, gcCycles); err != nil {
				return MemoryPoint{}, err
			}
			if m[gcCycles] >= start+2 {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return MemoryPoint{}, fmt.Errorf("clonegate ran no garbage collection in 60s of reviews")
			}
		}
		if err := r.post(url, 99, seq, &buf); err != nil {
			return MemoryPoint{}, err
		}
	}
	m, err = scrape(s.MetricsAddr, heapLive, heapInuse)
	if err != nil {
		return MemoryPoint{}, err
	}
	rssInt, err := s.RSS()
	if err != nil {
		return MemoryPoint{}, err
	}
	rss := float64(rssInt)
	return MemoryPoint{Claims: claims, RSSMiB: mib(rss), HeapInuseMiB: mib(m[heapInuse]), HeapLiveMiB: mib(m[heapLive]),
		rss: rss, inuse: m[heapInuse], l: m[heapLive]}, nil
}

func mib(b float64) float64 { return float64(int(b/(1<<20)*100)) / 100 }

// countClaims counts the claims in the cluster.
func countClaims(ctx context.Context, c client.Client) (int, error) {
	var list metav1.PartialObjectMetadataList
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PersistentVolumeClaimList"))
	n := 0
	opts := &client.ListOptions{Limit: 5000}
	for {
		if err := c.List(ctx, &list, opts); err != nil {
			return 0, err
		}
		n += len(list.Items)
		if list.Continue == "" {
			return n, nil
		}
		opts.Continue = list.Continue
	}
}

// fill creates plain claims (no data source, so no webhook is called) in
// the memory namespace until the cluster holds total claims.
func fill(ctx context.Context, c client.Client, total, workers int) (created int, err error) {
	have, err := countClaims(ctx, c)
	if err != nil {
		return 0, err
	}
	want := total - have
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	q := resource.MustParse("1Gi")
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1))
				if i > want || ctx.Err() != nil {
					return
				}
				pvc := &corev1.PersistentVolumeClaim{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("data-%d-%d", have, i), Namespace: memoryNS},
					Spec: corev1.PersistentVolumeClaimSpec{
						AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
						Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: q}},
					},
				}
				if e := c.Create(ctx, pvc); e != nil {
					once.Do(func() { err = e; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	return max(0, want), err
}

func mustQuantity(s string) resource.Quantity { return resource.MustParse(s) }
