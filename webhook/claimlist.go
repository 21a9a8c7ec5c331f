package webhook

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// listedClaim is what the index reads of a claim: the few fields its facts
// come from, from a watch event (listed) or straight from a list page's
// protobuf (skimClaimList).
type listedClaim struct {
	namespace, name, volumeName string
	class                       *string
	request, capacity           *resource.Quantity
	deletion                    *metav1.Time
	mode                        *corev1.PersistentVolumeMode
	phase                       corev1.PersistentVolumeClaimPhase
}

func listed(c *corev1.PersistentVolumeClaim) listedClaim {
	return listedClaim{
		namespace:  c.Namespace,
		name:       c.Name,
		volumeName: c.Spec.VolumeName,
		class:      c.Spec.StorageClassName,
		request:    storage(c.Spec.Resources.Requests),
		capacity:   storage(c.Status.Capacity),
		deletion:   c.DeletionTimestamp,
		mode:       c.Spec.VolumeMode,
		phase:      c.Status.Phase,
	}
}

func storage(l corev1.ResourceList) *resource.Quantity {
	if q, ok := l[corev1.ResourceStorage]; ok {
		return &q
	}
	return nil
}

// claimPage is one page of a claim list.
type claimPage struct {
	claims                     []listedClaim
	resourceVersion, continue_ string
}

func pageOf(l *corev1.PersistentVolumeClaimList) claimPage {
	p := claimPage{claims: make([]listedClaim, len(l.Items)), resourceVersion: l.ResourceVersion, continue_: l.Continue}
	for i := range l.Items {
		p.claims[i] = listed(&l.Items[i])
	}
	return p
}

// protobufPrefix starts every protobuf body the apiserver sends: the magic
// number of k8s.io/apimachinery's protobuf serializer.
var protobufPrefix = []byte{'k', '8', 's', 0}

// skimClaimList reads a PersistentVolumeClaimList in the apiserver's
// protobuf encoding (a runtime.Unknown holding the list), keeping only what
// the index reads. Decoding whole claims — managed fields, labels,
// annotations, conditions, every string and map — was most of clonegate's
// CPU and garbage while it listed 200k claims; the values it keeps are read
// as the generated decoders read them (pointers where a field is present,
// quantities parsed, a time to the second).
func skimClaimList(b []byte) (claimPage, error) {
	var p claimPage
	if !bytes.HasPrefix(b, protobufPrefix) {
		return p, errors.New("not a protobuf body")
	}
	var raw []byte
	var kind string
	u := fields{b: b[len(protobufPrefix):]}
	for u.next() {
		switch u.num {
		case 1: // typeMeta
			t := fields{b: u.bytes()}
			for t.next() {
				if t.num == 2 {
					kind = t.str()
				}
			}
			u.fail(t.err)
		case 2: // raw
			raw = u.bytes()
		}
	}
	switch {
	case u.err != nil:
		return p, u.err
	case kind != "PersistentVolumeClaimList" && kind != "": // none: what was asked for, as the decoder reads it
		return p, fmt.Errorf("a %q where a PersistentVolumeClaimList was expected", kind)
	}
	r := fields{b: raw}
	for r.next() {
		switch r.num {
		case 1: // metadata
			m := fields{b: r.bytes()}
			for m.next() {
				switch m.num {
				case 2:
					p.resourceVersion = m.str()
				case 3:
					p.continue_ = m.str()
				}
			}
			r.fail(m.err)
		case 2: // items
			var c listedClaim
			b := r.bytes()
			r.fail(skimClaim(b, &c))
			p.claims = append(p.claims, c)
		}
	}
	return p, r.err
}

// skimClaim reads a PersistentVolumeClaim.
func skimClaim(b []byte, c *listedClaim) error {
	r := fields{b: b}
	for r.next() {
		switch r.num {
		case 1: // metadata
			m := fields{b: r.bytes()}
			for m.next() {
				switch m.num {
				case 1:
					c.name = m.str()
				case 3:
					c.namespace = m.str()
				case 9:
					var err error
					c.deletion, err = skimTime(m.bytes())
					m.fail(err)
				}
			}
			r.fail(m.err)
		case 2: // spec
			s := fields{b: r.bytes()}
			for s.next() {
				switch s.num {
				case 2: // resources
					q := fields{b: s.bytes()}
					for q.next() {
						if q.num == 2 { // requests
							if v, ok, err := skimStorage(q.bytes()); ok {
								c.request = v
							} else {
								q.fail(err)
							}
						}
					}
					s.fail(q.err)
				case 3:
					c.volumeName = s.str()
				case 5:
					c.class = ptrTo(s.str())
				case 6:
					c.mode = ptrTo(corev1.PersistentVolumeMode(s.str()))
				}
			}
			r.fail(s.err)
		case 3: // status
			s := fields{b: r.bytes()}
			for s.next() {
				switch s.num {
				case 1:
					c.phase = corev1.PersistentVolumeClaimPhase(s.str())
				case 3: // capacity
					if v, ok, err := skimStorage(s.bytes()); ok {
						c.capacity = v
					} else {
						s.fail(err)
					}
				}
			}
			r.fail(s.err)
		}
	}
	return r.err
}

// skimStorage reads one entry of a map<string, Quantity>: the quantity if
// its key is "storage".
func skimStorage(b []byte) (*resource.Quantity, bool, error) {
	var key string
	var value []byte
	e := fields{b: b}
	for e.next() {
		switch e.num {
		case 1:
			key = e.str()
		case 2:
			value = e.bytes()
		}
	}
	if e.err != nil || key != string(corev1.ResourceStorage) {
		return nil, false, e.err
	}
	q := &resource.Quantity{}
	v := fields{b: value}
	for v.next() {
		if v.num == 1 {
			p, err := resource.ParseQuantity(v.str())
			if err != nil {
				return nil, false, err
			}
			*q = p
		}
	}
	if v.err != nil {
		return nil, false, v.err
	}
	return q, true, nil
}

// skimTime reads a metav1.Time as its decoder does: the seconds, in local
// time.
func skimTime(b []byte) (*metav1.Time, error) {
	t := &metav1.Time{}
	if len(b) == 0 {
		return t, nil
	}
	var seconds int64
	f := fields{b: b}
	for f.next() {
		if f.num == 1 {
			seconds = int64(f.varint())
		}
	}
	t.Time = time.Unix(seconds, 0).Local()
	return t, f.err
}

// fields reads the fields of a protobuf message one at a time.
type fields struct {
	b   []byte
	num protowire.Number
	typ protowire.Type
	v   []byte // the field's value: the bytes of a length-delimited field
	err error
}

func (f *fields) next() bool {
	if len(f.b) == 0 || f.err != nil {
		return false
	}
	num, typ, n := protowire.ConsumeTag(f.b)
	if n < 0 {
		f.err = protowire.ParseError(n)
		return false
	}
	f.b = f.b[n:]
	if typ == protowire.BytesType {
		f.v, n = protowire.ConsumeBytes(f.b)
	} else {
		n = protowire.ConsumeFieldValue(num, typ, f.b)
		if n >= 0 {
			f.v = f.b[:n]
		}
	}
	if n < 0 {
		f.err = protowire.ParseError(n)
		return false
	}
	f.b, f.num, f.typ = f.b[n:], num, typ
	return true
}

// fail records err, unless an error came first.
func (f *fields) fail(err error) {
	if f.err == nil {
		f.err = err
	}
}

// bytes is a length-delimited field's value; a field of another wire type
// is an error.
func (f *fields) bytes() []byte {
	if f.typ != protowire.BytesType {
		f.fail(fmt.Errorf("protobuf field %d: wire type %d, want bytes", f.num, f.typ))
		return nil
	}
	return f.v
}

func (f *fields) str() string { return string(f.bytes()) }

func (f *fields) varint() uint64 {
	if f.typ != protowire.VarintType {
		f.fail(fmt.Errorf("protobuf field %d: wire type %d, want varint", f.num, f.typ))
		return 0
	}
	v, _ := protowire.ConsumeVarint(f.v)
	return v
}
