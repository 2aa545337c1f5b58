-- wrk script: POST /oauth/introspect of one token with the admin credential,
-- over and over. Arguments: the token, the admin credential. Prints one
-- RESULT line that bench/issuance.sh reads; answers other than 200 and
-- socket errors are counted.

local body, headers

function init(args)
  body = "token=" .. args[1]
  headers = {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = "Bearer " .. args[2],
  }
end

function request()
  return wrk.format("POST", nil, headers, body)
end

-- The RESULT line, as the reference run prints it (run from the repository root).
label = "introspection"
dofile("bench/reference.lua")
