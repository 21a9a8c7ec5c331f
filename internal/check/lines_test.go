package check

import (
	"strings"
	"testing"
)

func TestLineOfAField(t *testing.T) {
	const claim = `# a comment first
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: c
spec:
  dataSource: {kind: VolumeSnapshot, name: s}
  resources:
    requests:
      storage: 1Gi
`
	const sts = `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: s}
spec:
  volumeClaimTemplates:
  - metadata: {name: a}
  - metadata: {name: b}
    spec:
      storageClassName: fast
`
	const list = `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: x}
- apiVersion: v1
  kind: PersistentVolumeClaim
  metadata: {name: c}
  spec:
    volumeMode: Block
`
	const anchors = `apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: c}
x: &res
  requests:
    storage: 1Gi
spec:
  resources: *res
`
	const json = `{"apiVersion": "v1", "kind": "PersistentVolumeClaim",
 "metadata": {"name": "c"},
 "spec": {
   "volumeMode": "Block"}}`
	cases := []struct {
		name, in string
		obj      int // which object
		field    string
		want     int
	}{
		{"a nested field", claim, 0, "spec.resources.requests.storage", 10},
		{"a field in a flow mapping", claim, 0, "spec.dataSource.name", 7},
		{"an absent field: the nearest enclosing one", claim, 0, "spec.dataSource.apiGroup", 7},
		{"an absent branch: the nearest enclosing one", claim, 0, "spec.resources.limits.storage", 8},
		{"a path absent from the top: the object's first line", claim, 0, "status.phase", 2},
		{"no path: the object's first line", claim, 0, "", 2},
		{"a list index", sts, 0, "spec.volumeClaimTemplates[1].spec.storageClassName", 9},
		{"an index beyond the list: the list", sts, 0, "spec.volumeClaimTemplates[5].spec", 5},
		{"a field through a map key in brackets", claim, 0, "spec.resources.requests[storage]", 10},
		{"an item of a List", list, 1, "spec.volumeMode", 11},
		{"an item of a List without the field: the item's first line", list, 1, "spec.storageClassName", 10},
		{"a List item's own first line", list, 0, "data", 4},
		{"through an alias", anchors, 0, "spec.resources.requests.storage", 6},
		{"JSON", json, 0, "spec.volumeMode", 4},
		{"a key given twice: the last, which is the one judged", "apiVersion: v1\nkind: A\nspec: {x: 1}\nspec:\n  x: 2\n", 0, "spec.x", 5},
		{"the second document, counted in the file", "kind: A\napiVersion: v1\n---\n\nkind: B\napiVersion: v1\nspec:\n  x: 1\n", 1, "spec.x", 8},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			objs, err := readManifests("f", strings.NewReader(c.in))
			if err != nil {
				t.Fatal(err)
			}
			if got := objs[c.obj].Line(c.field); got != c.want {
				t.Errorf("Line(%q) = %d, want %d", c.field, got, c.want)
			}
		})
	}
}

func TestLineWithoutPositions(t *testing.T) {
	// A document whose positions could not be read: its first line.
	if got := (Object{pos: Position{3, 1}}).Line("spec.x"); got != 3 {
		t.Errorf("Line = %d, want 3", got)
	}
}

func TestSplitPath(t *testing.T) {
	got := strings.Join(splitPath("spec.volumes[0].ephemeral.volumeClaimTemplate.metadata.labels[a.b/c]"), " ")
	if want := "spec volumes 0 ephemeral volumeClaimTemplate metadata labels a.b/c"; got != want {
		t.Errorf("splitPath = %q, want %q", got, want)
	}
}

func TestPositionHasTheColumn(t *testing.T) {
	in := "apiVersion: v1\nkind: A\nspec:\n  list:\n  - a: 1\n  - {b: 2}\n  flow: {x: 1, y: 2}\n"
	objs, err := readManifests("f", strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]Position{
		"spec.flow.y":    {7, 16}, // the key
		"spec.list[1]":   {6, 5},  // the item
		"spec.list[0].a": {5, 5},
		"":               {1, 1}, // the object
	} {
		if got := objs[0].Position(field); got != want {
			t.Errorf("Position(%q) = %v, want %v", field, got, want)
		}
	}
}
