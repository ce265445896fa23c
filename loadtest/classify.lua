-- wrk script: POST /classify with one short sentence per request.
wrk.method = "POST"
wrk.path = "/classify"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"inputs": "A gripping, beautifully shot film with a sharp script."}'
