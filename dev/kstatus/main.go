// Command kstatus prints what sigs.k8s.io/cli-utils/pkg/kstatus computes for Kubernetes objects:
// the status Flux (and kpt, and `kubectl wait`-like tools built on kstatus) would see.
//
// It reads JSON on stdin: one object, or a list ({"items": [...]}, as `kubectl get -o json`
// prints it), and writes one JSON line per object:
//
//	{"name": "ns/name", "status": "Current|InProgress|Failed|Terminating|Unknown", "message": "..."}
//
// Built by dev/build-tools.sh --kstatus at the cli-utils version pinned in dev/versions.env.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kjson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	data, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	// apimachinery's decoder keeps whole numbers int64, as the API machinery does: kstatus
	// reads metadata.generation and status.observedGeneration as int64.
	var doc map[string]interface{}
	if err := kjson.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("reading JSON: %w", err)
	}
	objects := []map[string]interface{}{doc}
	if items, ok := doc["items"].([]interface{}); ok {
		objects = objects[:0]
		for i, item := range items {
			obj, ok := item.(map[string]interface{})
			if !ok {
				return fmt.Errorf("items[%d] is not an object", i)
			}
			objects = append(objects, obj)
		}
	}
	enc := json.NewEncoder(out)
	for _, obj := range objects {
		u := &unstructured.Unstructured{Object: obj}
		res, err := status.Compute(u)
		if err != nil {
			return fmt.Errorf("%s/%s: %w", u.GetNamespace(), u.GetName(), err)
		}
		v := verdict{Name: u.GetNamespace() + "/" + u.GetName(), Status: res.Status.String(), Message: res.Message}
		if err := enc.Encode(v); err != nil {
			return err
		}
	}
	return nil
}
