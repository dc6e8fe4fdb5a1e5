package protocol

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

func loadSchema(t *testing.T) (*jsonschema.Schema, map[string]any) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("schema", "v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("v1.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("v1.json")
	if err != nil {
		t.Fatal(err)
	}
	return sch, doc.(map[string]any)
}

// TestSchemaMatchesGoTypes keeps schema/v1.json and the Go types in step:
// the same property names, and the fields Go always writes are required.
func TestSchemaMatchesGoTypes(t *testing.T) {
	_, doc := loadSchema(t)
	defs := doc["$defs"].(map[string]any)
	for def, typ := range map[string]reflect.Type{
		"envelope":  reflect.TypeFor[Envelope](),
		"finding":   reflect.TypeFor[Finding](),
		"hello":     reflect.TypeFor[Hello](),
		"heartbeat": reflect.TypeFor[Heartbeat](),
		"resume":    reflect.TypeFor[Resume](),
		"held":      reflect.TypeFor[HeldRun](),
		"ack":       reflect.TypeFor[Ack](),
	} {
		t.Run(def, func(t *testing.T) {
			d := defs[def].(map[string]any)
			var gotProps, gotReq []string
			for p := range d["properties"].(map[string]any) {
				gotProps = append(gotProps, p)
			}
			for _, r := range d["required"].([]any) {
				gotReq = append(gotReq, r.(string))
			}
			var wantProps, wantReq []string
			for f := range typ.Fields() {
				name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
				wantProps = append(wantProps, name)
				if opts != "omitempty" {
					wantReq = append(wantReq, name)
				}
			}
			slices.Sort(gotProps)
			slices.Sort(wantProps)
			slices.Sort(gotReq)
			slices.Sort(wantReq)
			if !slices.Equal(gotProps, wantProps) {
				t.Errorf("schema properties %v, Go fields %v", gotProps, wantProps)
			}
			if !slices.Equal(gotReq, wantReq) {
				t.Errorf("schema requires %v, Go always writes %v", gotReq, wantReq)
			}
			if d["additionalProperties"] != false {
				t.Error("schema allows additional properties; the decoder does not")
			}
		})
	}
}

func TestGoldenFilesMatchSchema(t *testing.T) {
	sch, _ := loadSchema(t)
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*.ndjson"))
	if err != nil || len(files) < 5 {
		t.Fatalf("golden files: %v, %v", files, err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(v); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestSchemaRejectsWhatDecodeRejects spot-checks that the schema is as strict
// as the decoder on the rules a schema can express.
func TestSchemaRejectsWhatDecodeRejects(t *testing.T) {
	sch, _ := loadSchema(t)
	for _, line := range []string{
		`{"v":2,"kind":"heartbeat","run":"r","seq":1,"ts":"2026-11-21T09:30:00Z"}`,
		`{"v":1,"kind":"exec","run":"r","seq":1,"ts":"2026-11-21T09:30:00Z"}`,
		`{"v":1,"kind":"heartbeat","run":"r.>","seq":1,"ts":"2026-11-21T09:30:00Z"}`,
		`{"v":1,"kind":"heartbeat","run":"r","seq":0,"ts":"2026-11-21T09:30:00Z"}`,
		`{"v":1,"kind":"heartbeat","run":"r","seq":1,"ts":"yesterday"}`,
		`{"v":1,"kind":"heartbeat","run":"r","seq":1,"ts":"2026-11-21T09:30:00Z","check":"x"}`,
		`{"v":1,"kind":"result","run":"r","seq":1,"ts":"2026-11-21T09:30:00Z","check":"net"}`,
		`{"v":1,"kind":"result","run":"r","seq":1,"ts":"2026-11-21T09:30:00Z","check":"net","status":"ok","findings":[{"code":"x","severity":"warn","message":"m"}]}`,
		`{"v":1,"kind":"hello","run":"r","seq":1,"ts":"2026-11-21T09:30:00Z"}`,
		`{"v":1,"kind":"heartbeat","run":"r","seq":1,"ts":"2026-11-21T09:30:00Z","cmd":"reboot"}`,
		`{"v":1,"kind":"ack","run":"r","seq":1,"cmd":"x"}`,
		`{"v":1,"kind":"resume","run":"r","seq":1,"ts":"2026-11-21T09:30:00Z"}`,
		`{"v":1,"kind":"resume","run":"r","seq":1,"ts":"2026-11-21T09:30:00Z","data":{"held":[{"run":"r","oldest":0,"newest":3}]}}`,
		`{"v":1,"kind":"resume","run":"r","seq":1,"ts":"2026-11-21T09:30:00Z","data":{"held":[{"run":"r.>","oldest":1,"newest":3}]}}`,
		`{"v":1,"kind":"hello","run":"r","seq":1,"ts":"2026-11-21T09:30:00Z","data":{"hostname":"a\nb","os":"linux","agent_version":"1","checks":[]}}`,
	} {
		var v any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatal(err)
		}
		if sch.Validate(v) == nil {
			t.Errorf("schema accepts %s", line)
		}
		if _, err := Decode([]byte(line)); err == nil && !strings.Contains(line, `"ack"`) {
			t.Errorf("Decode accepts %s", line)
		}
	}
}
