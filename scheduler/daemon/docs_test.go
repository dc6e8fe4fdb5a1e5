package daemon

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// optionKeys lists the file's keys as docs/scheduler.md names them:
// dotted, NAME for a map's keys, [] for a list's items; a band is one key.
func optionKeys(prefix string, t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || !f.IsExported() {
			continue
		}
		key := prefix + tag
		ft := f.Type
		switch {
		case ft == reflect.TypeFor[*BandSpec]():
			keys = append(keys, key)
		case ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.Struct && ft.Elem() != reflect.TypeFor[PolicySpec]():
			keys = append(keys, key+".NAME")
		case ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.Struct:
			keys = append(keys, optionKeys(key+".NAME.", ft.Elem())...)
		case ft.Kind() == reflect.Map:
			keys = append(keys, key+".NAME")
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			keys = append(keys, optionKeys(key+"[].", ft.Elem())...)
		case ft.Kind() == reflect.Struct && ft != reflect.TypeFor[Duration]():
			keys = append(keys, optionKeys(key+".", ft)...)
		default:
			keys = append(keys, key)
		}
	}
	return keys
}

func TestEveryOptionIsDocumented(t *testing.T) {
	b, err := os.ReadFile("../../docs/scheduler.md")
	if err != nil {
		t.Fatal(err)
	}
	keys := optionKeys("", reflect.TypeFor[File]())
	if len(keys) < 20 {
		t.Fatalf("found only %d keys: %v", len(keys), keys)
	}
	for _, k := range keys {
		if !strings.Contains(string(b), "| `"+k+"` |") {
			t.Errorf("docs/scheduler.md has no row for option %s", k)
		}
	}
}
