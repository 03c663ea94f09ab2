-- wrk script for P3's baseline: POST one CRM delivery body, as the dispatcher sends it,
-- to the receiver, over and over (the receiver answers each 200 at once).
--
-- Arguments (after `--`): body_file path webhook_id webhook_timestamp webhook_signature

local request_bytes

function init(args)
  local f = assert(io.open(args[1], "rb"))
  local body = f:read("*a")
  f:close()
  local headers = {}
  headers["Content-Type"] = "application/json"
  headers["webhook-id"] = args[3]
  headers["webhook-timestamp"] = args[4]
  headers["webhook-signature"] = args[5]
  headers["User-Agent"] = "dmledger"
  request_bytes = wrk.format("POST", args[2], headers, body)
end

function request()
  return request_bytes
end
