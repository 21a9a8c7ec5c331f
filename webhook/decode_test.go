package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	sigsjson "sigs.k8s.io/json"

	"github.com/clonegate/clonegate/webhook/rules"
)

// A webhook reuses its decoder and the object it decodes into from review
// to review: what one body leaves behind (trailing whitespace, a refused
// body's remains, the last claim's source) never leaks into the next
// review's answer.
func TestDecoderReusedAcrossReviews(t *testing.T) {
	h := NewHandlers(Config{Policy: &rules.Policy{}, Facts: rvSource{}}).Validate
	good := func(uid string) string { return rvReview(uid, "apps", rvClaim("5Gi", rvClone)) }
	bad := func(uid string) string { return rvReview(uid, "apps", rvClaim("1Gi", rvClone)) }
	padded := strings.Replace(good("big"), `"oldObject":null`, `"oldObject":{"padding":"`+strings.Repeat("x", 300<<10)+`"}`, 1)
	for i, c := range []struct {
		body    string
		uid     string // answered
		allowed bool
		message string // of a refusal
	}{
		{body: good("a"), uid: "a", allowed: true},
		{body: good("b") + "\n", uid: "b", allowed: true},
		{body: "\n\t " + bad("c") + " \r\n  ", uid: "c", message: "must be at least 5Gi"},
		{body: good("d"), uid: "d", allowed: true},
		{body: good("e") + `{"x":1}`, message: "after the AdmissionReview"},
		{body: good("f") + good("g"), message: "after the AdmissionReview"},
		{body: good("h"), uid: "h", allowed: true},
		{body: good("i")[:100], message: "the body is not an AdmissionReview"},
		{body: bad("j") + "\n\n\n", uid: "j", message: "must be at least 5Gi"},
		{body: padded, uid: "big", allowed: true},
		{body: good("k") + "\n", uid: "k", allowed: true},
		{body: `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"l","userInfo":"root"}}`, uid: "l", message: "request.userInfo: must be an object"},
		{body: good("m"), uid: "m", allowed: true},
		// A small plain claim after an undersized clone: not a clone.
		{body: bad("n"), uid: "n", message: "must be at least 5Gi"},
		{body: rvReview("o", "apps", rvClaim("1Gi", "")), uid: "o", allowed: true},
		// A CREATE with no object after one with: refused, not judged as
		// the (cleared) object decoded in place; an empty object is one.
		{body: bad("p"), uid: "p", message: "must be at least 5Gi"},
		{body: strings.Replace(good("q"), `"object":`, `"objtec":`, 1), uid: "q", message: "a CREATE review carries the new object"},
		{body: rvReview("r", "apps", "{}"), uid: "r", allowed: true},
		{body: rvReview("s", "apps", "null"), uid: "s", message: "a CREATE review carries the new object"},
	} {
		resp := rvAnswer(t, rvPost(t, h, []byte(c.body), "application/json"))
		if resp.Allowed != c.allowed || (c.uid != "" && string(resp.UID) != c.uid) {
			t.Errorf("review %d: allowed=%v uid=%q (%+v), want allowed=%v uid=%q", i, resp.Allowed, resp.UID, resp.Result, c.allowed, c.uid)
		}
		if !c.allowed && (resp.Result == nil || !strings.Contains(resp.Result.Message, c.message)) {
			t.Errorf("review %d: result %+v, want a message with %q", i, resp.Result, c.message)
		}
	}
}

// Reviews answered at once each get their own answer.
func TestConcurrentReviews(t *testing.T) {
	hooks := NewHandlers(Config{Policy: &rules.Policy{}, Facts: rvSource{}})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				uid, size, want := fmt.Sprintf("g%d-%d", g, i), "5Gi", true
				if i%3 == 0 {
					size, want = "1Gi", false
				}
				h, source := hooks.Validate, rvClone
				if g%2 == 1 {
					h, source, want = hooks.Mutate, rvSnapNoGroup, true
				}
				body := rvReview(uid, "apps", rvClaim(size, source))
				rec := httptest.NewRecorder()
				req := httptest.NewRequest("POST", "/", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				h.ServeHTTP(rec, req)
				var review admissionv1.AdmissionReview
				if err := json.Unmarshal(rec.Body.Bytes(), &review); err != nil || review.Response == nil {
					t.Errorf("%s: answer %q (%v)", uid, rec.Body.String(), err)
					return
				}
				if r := review.Response; string(r.UID) != uid || r.Allowed != want {
					t.Errorf("%s: answered uid=%s allowed=%v, want allowed=%v", uid, r.UID, r.Allowed, want)
				}
			}
		})
	}
	wg.Wait()
}

// The answers written without the encoder are what the encoder writes, byte
// for byte; what they cannot write goes to the encoder.
func TestAllowedAnswerAsEncoded(t *testing.T) {
	patch := groupPatch([3]*string{}, [3]*string{ptr(rules.SnapshotAPIGroup), nil, nil})
	var ops []jsonpatch.JsonPatchOperation
	if err := json.Unmarshal(patch, &ops); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		uid  string
		resp admission.Response
	}{
		{"u1", allowed(nil)},
		{"4b3e2f8e-0d1c-4c59-9a3a-0f8f5f0a1b2c", allowed([]string{`spec.dataSource.apiGroup: defaulted to "snapshot.storage.k8s.io"`, `a \ backslash`})},
		{"u3", admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: true, Patch: patch, PatchType: &jsonPatchType}}},
		{"u4", admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: true, Patch: patch, PatchType: &jsonPatchType, Warnings: []string{"w"}}}},
		{"<u5>", allowed(nil)},
		{"u6", allowed([]string{"naïve"})},
		{"u7", allowed([]string{"a <b> & c"})},
		{"u8", allowed([]string{"tab\there"})},
		{"u9", admission.Allowed("")},
		{"u10", admission.Denied("no")},
		{"u11", admission.Patched("", ops...)},
	} {
		var got discard
		got.header = map[string][]string{}
		writeAnswer(&got, nil, "x", allowed(nil)) // the buffer is reused: leave something in it
		buf := writeAnswer(&got, make([]byte, 0, 8), "x", allowed(nil))
		writeAnswer(&got, buf[:0], types.UID(c.uid), c.resp)

		resp := c.resp.AdmissionResponse
		resp.UID = types.UID(c.uid)
		if len(c.resp.Patches) > 0 {
			resp.Patch, resp.PatchType = patch, &jsonPatchType
		}
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Response: &resp}); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want.String(), got.last.String()); diff != "" {
			t.Errorf("uid %q: answer differs from the encoder's (-want +got):\n%s", c.uid, diff)
		}
		if ct := got.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
	}
}

// The mutating webhook's patch is what json.Marshal writes of its
// operations, byte for byte.
func TestGroupPatchAsMarshalled(t *testing.T) {
	values := []*string{nil, ptr(rules.SnapshotAPIGroup), ptr("backup.example.com"), ptr("team-a"), ptr("a<b>&c"), ptr("naïve"), ptr(`q"uote\`), ptr("")}
	for _, b0 := range values {
		for _, a0 := range values {
			for _, a2 := range values {
				before, after := [3]*string{b0, b0, b0}, [3]*string{a0, b0, a2}
				want, err := json.Marshal(groupPatches(before, after))
				if err != nil {
					t.Fatal(err)
				}
				if got := groupPatch(before, after); !bytes.Equal(got, want) && !(len(groupPatches(before, after)) == 0 && string(got) == "[]") {
					t.Errorf("before %v after %v: patch %s, want %s", before, after, got, want)
				}
			}
		}
	}
}

// recordingGrants grants everything and records for whom it was asked.
type recordingGrants struct{ users []authenticationv1.UserInfo }

func (g *recordingGrants) Granted(_ context.Context, user authenticationv1.UserInfo, _ string, _ rules.Source) (string, error) {
	g.users = append(g.users, user)
	return "", nil
}

// request.userInfo is decoded when a grant is checked, with every field the
// SubjectAccessReview needs; one that does not decode fails the review closed.
func TestUserInfoDecodedForGrants(t *testing.T) {
	grants := &recordingGrants{}
	hooks := NewHandlers(Config{Policy: &rules.Policy{CrossNamespace: rules.CrossNamespacePolicy{AllowWithReferenceGrant: true}}, Facts: rvSource{}, Grants: grants})
	user := `{"username":"system:serviceaccount:apps:deployer","uid":"7d1c","groups":["system:serviceaccounts","system:authenticated"],` +
		`"extra":{"authentication.kubernetes.io/pod-name":["deployer-0"]}}`
	review := func(userInfo string) []byte {
		return []byte(strings.Replace(rvReview("u1", "apps", rvClaim("5Gi", rvCrossNS)), `{"username":"admin","groups":["system:masters","system:authenticated"]}`, userInfo, 1))
	}
	resp := rvAnswer(t, rvPost(t, hooks.Mutate, review(user), "application/json"))
	want := []authenticationv1.UserInfo{{Username: "system:serviceaccount:apps:deployer", UID: "7d1c", Groups: []string{"system:serviceaccounts", "system:authenticated"},
		Extra: map[string]authenticationv1.ExtraValue{"authentication.kubernetes.io/pod-name": {"deployer-0"}}}}
	if !resp.Allowed || !cmp.Equal(grants.users, want) {
		t.Errorf("answer %+v; grants asked for %+v, want %+v", resp, grants.users, want)
	}
	for _, bad := range []string{`{"username":5}`, `{"groups":"system:masters"}`} {
		resp := rvAnswer(t, rvPost(t, hooks.Mutate, review(bad), "application/json"))
		if resp.Allowed || resp.Result == nil || !strings.Contains(resp.Result.Message, "request.userInfo") {
			t.Errorf("userInfo %s: answered %+v, want a refusal naming request.userInfo", bad, resp)
		}
	}
}

// Every webhook's review, as the benchmarks send it, stays within 30
// allocations (the benchmarks say how many exactly).
func TestReviewAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector drops pooled states: allocation counts differ")
	}
	for _, r := range benchReviews {
		h, body, wantPatch := r.setup(t)
		serve := benchServer(t, h, body, wantPatch)
		if n := testing.AllocsPerRun(200, serve); n > 30 {
			t.Errorf("%s: %.0f allocations per review, want at most 30", r.name, n)
		}
	}
}

// A field the rules read that has the wrong JSON type is refused, never
// read as absent; the fixed values reviews are made of decode as strings do.
func TestReadFieldsOfTheWrongType(t *testing.T) {
	claim := func(spec string) string {
		return rvReview("u1", "apps", `{"kind":"PersistentVolumeClaim","apiVersion":"v1","metadata":{"name":"clone"},"spec":{`+spec+`}}`)
	}
	for _, body := range []string{
		claim(`"storageClassName":5,"dataSource":{"kind":"PersistentVolumeClaim","name":"src"}`),
		claim(`"volumeMode":true,"dataSource":{"kind":"PersistentVolumeClaim","name":"src"}`),
		claim(`"dataSource":"src"`),
		claim(`"dataSource":{"kind":"PersistentVolumeClaim","name":["src"]}`),
		claim(`"dataSourceRef":{"kind":"PersistentVolumeClaim","name":"src","namespace":{}}`),
		claim(`"resources":{"requests":{"storage":{"value":1}}},"dataSource":{"kind":"PersistentVolumeClaim","name":"src"}`),
		claim(`"resources":{"requests":["5Gi"]},"dataSource":{"kind":"PersistentVolumeClaim","name":"src"}`),
		strings.Replace(rvReview("u1", "apps", rvClaim("5Gi", rvClone)), `"operation":"CREATE"`, `"operation":1`, 1),
		strings.Replace(rvReview("u1", "apps", rvClaim("5Gi", rvClone)), `"namespace":"apps","operation"`, `"namespace":["apps"],"operation"`, 1),
		strings.Replace(rvReview("u1", "apps", rvClaim("5Gi", rvClone)), `"metadata":{"name":"clone"`, `"metadata":{"name":7`, 1),
	} {
		for _, h := range []struct {
			path string
			h    http.Handler
		}{{MutatePath, rvHandlers.Mutate}, {ValidatePath, rvHandlers.Validate}} {
			resp := rvAnswer(t, rvPost(t, h.h, []byte(body), "application/json"))
			if resp.Allowed || resp.Result == nil || resp.Result.Code != 400 || !strings.Contains(resp.Result.Message, "the body is not an AdmissionReview") {
				t.Errorf("%s %s: answered %+v, want a 400 saying what cannot be decoded", h.path, body, resp)
			}
		}
	}
}

func TestWords(t *testing.T) {
	var v struct {
		A, B, C, D word
		E          *word
	}
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts([]byte(`{"A":"CREATE","B":"\u0043REATE","C":"custom","D":null,"E":"Block"}`), &v); err != nil {
		t.Fatal(err)
	}
	if v.A != "CREATE" || v.B != "CREATE" || v.C != "custom" || v.D != "" || v.E == nil || *v.E != "Block" {
		t.Errorf("decoded %+v", v)
	}
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts([]byte(`{"A":5}`), &v); err == nil {
		t.Error("a number decoded as a word")
	}
}
