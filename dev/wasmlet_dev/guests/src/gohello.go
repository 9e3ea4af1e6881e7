// gohello: a Go (GOOS=wasip1) guest; prints a line, or answers as a CGI responder when
// REQUEST_METHOD is set, with the same echo body as the C cgi guest.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
)

func main() {
	method, isCGI := os.LookupEnv("REQUEST_METHOD")
	if !isCGI {
		fmt.Printf("hello from go %s on %s/%s, args=%q\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, os.Args)
		return
	}
	length, _ := strconv.Atoi(os.Getenv("CONTENT_LENGTH"))
	if length < 0 {
		length = 0
	}
	body := make([]byte, length)
	n, _ := io.ReadFull(os.Stdin, body)
	body = body[:n]

	out := os.Stdout
	fmt.Fprint(out, "Status: 200 OK\r\n")
	fmt.Fprint(out, "Content-Type: text/plain; charset=utf-8\r\n")
	fmt.Fprint(out, "X-Guest: cgi-go\r\n")
	fmt.Fprint(out, "\r\n")
	fmt.Fprintf(out, "method=%s\npath=%s\nquery=%s\nbody_length=%d\nbody=%s\n",
		method, os.Getenv("PATH_INFO"), os.Getenv("QUERY_STRING"), len(body), body)
}
