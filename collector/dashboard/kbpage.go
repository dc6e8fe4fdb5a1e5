package dashboard

import (
	"net/http"
	"net/url"
	"strings"
)

const maxKBResults = 50

type kbPageView struct {
	Query   string
	Entries []kbView
}

func (s *server) kbSearch(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	if len(q) > 256 {
		q = q[:256]
	}
	v := &kbPageView{Query: clean(q)}
	if q != "" {
		for _, e := range s.src.SearchKB(q, maxKBResults) {
			v.Entries = append(v.Entries, kbFromEntry(e))
		}
	}
	s.render(w, r, http.StatusOK, "kb", page{Title: "Knowledge base", Nav: "kb", JSON: "/api/kb?q=" + url.QueryEscape(q), Main: v})
}
