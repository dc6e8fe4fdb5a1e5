package logs

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// eventXML is the part of a Windows event's XML rendering
// (schema http://schemas.microsoft.com/win/2004/08/events/event) that the
// check uses.
type eventXML struct {
	System struct {
		Provider struct {
			Name            string `xml:"Name,attr"`
			EventSourceName string `xml:"EventSourceName,attr"`
		} `xml:"Provider"`
		EventID     string `xml:"EventID"`
		Level       string `xml:"Level"`
		TimeCreated struct {
			SystemTime string `xml:"SystemTime,attr"`
		} `xml:"TimeCreated"`
		EventRecordID string `xml:"EventRecordID"`
		Execution     struct {
			ProcessID string `xml:"ProcessID,attr"`
		} `xml:"Execution"`
		Channel  string `xml:"Channel"`
		Computer string `xml:"Computer"`
	} `xml:"System"`
	EventData struct {
		Data []struct {
			Name  string `xml:"Name,attr"`
			Value string `xml:",chardata"`
		} `xml:"Data"`
	} `xml:"EventData"`
	UserData struct {
		Inner []byte `xml:",innerxml"`
	} `xml:"UserData"`
	RenderingInfo struct {
		Message string `xml:"Message"`
	} `xml:"RenderingInfo"`
}

// eventPriority maps a Windows event level to a syslog priority:
// Critical (1) is crit, Error (2) err, Warning (3) warning, the rest
// (Information 4, LogAlways 0, Verbose 5) info.
func eventPriority(level int) int {
	switch level {
	case 1:
		return priCrit
	case 2:
		return priErr
	case 3:
		return priWarning
	}
	return 6
}

// parseEventXML reads an event as EvtRender (EvtRenderEventXml) or
// EvtFormatMessage (EvtFormatMessageXml) gives it. The message is the
// rendered one when the XML has it, else the event's data values.
func parseEventXML(b []byte) (entry, error) {
	var ev eventXML
	if err := xml.Unmarshal(b, &ev); err != nil {
		return entry{}, fmt.Errorf("event xml: %w", err)
	}
	s := ev.System
	if s.Provider.Name == "" && s.EventID == "" {
		return entry{}, fmt.Errorf("event xml: no System/Provider or EventID")
	}
	e := entry{Source: s.Channel, Provider: s.Provider.Name, Priority: 6}
	if e.Provider == "" {
		e.Provider = s.Provider.EventSourceName
	}
	if id, err := strconv.ParseUint(strings.TrimSpace(s.EventID), 10, 32); err == nil {
		e.EventID = uint32(id)
	}
	if lv, err := strconv.Atoi(strings.TrimSpace(s.Level)); err == nil {
		e.Priority = eventPriority(lv)
	}
	e.RecordID, _ = strconv.ParseUint(strings.TrimSpace(s.EventRecordID), 10, 64)
	e.PID, _ = strconv.Atoi(s.Execution.ProcessID)
	if t, err := time.Parse(time.RFC3339Nano, s.TimeCreated.SystemTime); err == nil {
		e.Time = t
	}
	e.Message = strings.TrimSpace(ev.RenderingInfo.Message)
	if e.Message == "" {
		e.Message = eventDataText(ev)
	}
	return e, nil
}

// eventDataText joins the data values of an event that has no
// rendered message (its provider's message file is missing).
func eventDataText(ev eventXML) string {
	var parts []string
	for _, d := range ev.EventData.Data {
		v := strings.TrimSpace(d.Value)
		if v == "" {
			continue
		}
		if d.Name != "" {
			v = d.Name + "=" + v
		}
		parts = append(parts, v)
	}
	if len(parts) == 0 && len(ev.UserData.Inner) > 0 {
		dec := xml.NewDecoder(bytes.NewReader(ev.UserData.Inner))
		for {
			tok, err := dec.Token()
			if err != nil {
				break
			}
			if cd, ok := tok.(xml.CharData); ok {
				if v := strings.TrimSpace(string(cd)); v != "" {
					parts = append(parts, v)
				}
			}
		}
	}
	if len(parts) == 0 {
		return "(no message)"
	}
	return strings.Join(parts, ", ")
}

// eventQuery builds the structured query of a subscription: the
// events of levels on every channel, and with since > 0 only those of
// the last since.
func eventQuery(channels []string, levels []int, since time.Duration) string {
	var cond []string
	for _, l := range levels {
		cond = append(cond, "Level="+strconv.Itoa(l))
	}
	xpath := "*[System[(" + strings.Join(cond, " or ") + ")"
	if since > 0 {
		xpath += " and TimeCreated[timediff(@SystemTime) &lt;= " + strconv.FormatInt(since.Milliseconds(), 10) + "]"
	}
	xpath += "]]"
	var b strings.Builder
	b.WriteString("<QueryList>")
	for i, c := range channels {
		var path bytes.Buffer
		xml.EscapeText(&path, []byte(c))
		fmt.Fprintf(&b, `<Query Id="%d" Path="%s"><Select Path="%s">%s</Select></Query>`, i, path.String(), path.String(), xpath)
	}
	b.WriteString("</QueryList>")
	return b.String()
}

// eventLevels are the Windows levels reported for a minimum syslog
// priority: Critical and Error for err, Warning too for warning.
func eventLevels(minPri int) []int {
	levels := []int{1}
	if minPri >= priErr {
		levels = append(levels, 2)
	}
	if minPri >= priWarning {
		levels = append(levels, 3)
	}
	return levels
}
