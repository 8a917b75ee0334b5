package livepeertest_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"genservice/livepeer/livepeertest"
)

func Example() {
	s, err := livepeertest.New(livepeertest.Config{APIKey: "secret"})
	if err != nil {
		panic(err)
	}
	defer s.Close()

	// The next text-to-image request is rate limited, the one after works.
	s.Script(livepeertest.TextToImage, livepeertest.Step{
		Status: http.StatusTooManyRequests,
		Body:   livepeertest.StudioError("Too many AI requests"),
		Header: http.Header{"Retry-After": {"1"}},
	})
	for range 2 {
		req, _ := http.NewRequest(http.MethodPost, s.URL()+"/text-to-image",
			strings.NewReader(`{"model_id":"SG161222/RealVisXL_V4.0_Lightning","prompt":"a cat","seed":7}`))
		req.Header.Set("Authorization", "Bearer secret")
		req.Header.Set("Content-Type", "application/json")
		resp, err := s.Client().Do(req)
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, strings.ReplaceAll(string(body), s.Origin(), "<origin>"))
	}
	fmt.Println(s.Hits(livepeertest.TextToImage), "requests")
	// Output:
	// 429 {"errors":["Too many AI requests"]}
	// 200 {"images":[{"url":"<origin>/stream/514e28b7/0.png","seed":7,"nsfw":false}]}
	// 2 requests
}
